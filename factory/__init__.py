"""The golden image factory: render → build → verify → tag → publish."""

__version__ = "0.1.0"
