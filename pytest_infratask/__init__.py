"""Run Markdown infrastructure task files with pytest."""

__version__ = "0.1.0"
