"""Shared foundations: settings, errors with exit codes, logging, durable writes, TOML
writing, geodesy, tokens."""
