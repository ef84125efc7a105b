"""visdecode: decoding seen images from brain activity with human-aligned image encoders."""

__version__ = "0.1.0"
