"""OpenRFT: open, self-hostable reinforcement fine-tuning for language models."""

__version__ = "0.1.0"
