"""The example_app application: a Tornado REST API with live messages."""

__version__ = "0.1.0"
