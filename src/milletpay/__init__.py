"""Millet Pay: an open-source mobile wallet and payments platform."""

__version__ = "0.1.0"
