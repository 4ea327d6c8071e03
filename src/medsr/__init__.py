"""medsr: medical image restoration research toolkit."""

__version__ = "0.1.0"
