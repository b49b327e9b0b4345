"""The {{ cookiecutter.project_slug }} application: a Tornado REST API with live messages."""

__version__ = "0.1.0"
