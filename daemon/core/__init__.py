"""Shared foundations: durable writes, settings, logging, geodesy, tokens."""
