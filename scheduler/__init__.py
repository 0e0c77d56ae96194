"""space-scheduler: an on-demand GPU job scheduler for Hugging Face Spaces."""

__version__ = "0.2.0"
