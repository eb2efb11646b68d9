"""NAR: neural action representations that generalise across animals."""

__version__ = "0.1.0"
