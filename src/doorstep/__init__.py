"""Doorstep: an open-source customer-experience platform for online retailers."""

__version__ = "0.1.0"
