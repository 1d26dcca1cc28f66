"""catdog: train and compare neural-network optimizers on Dogs vs. Cats."""

__version__ = "0.1.0"
