"""Synthetic drives for the demo, tests and benchmarks (kept off the daemon's path)."""
