"""mapillary-daemon: set-and-forget uploader for street-level imagery."""

__version__ = "0.1.0"
