"""The contract as code: provider specs, validation, lifecycle and the wire mapping."""

__version__ = "0.1.0"
