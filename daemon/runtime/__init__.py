"""The running daemon: supervision, its stages, notify."""
