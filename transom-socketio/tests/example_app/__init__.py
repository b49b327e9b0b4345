"""The example_app application: a Tornado REST API with live messages."""

__version__ = "0.1.0"
# The app's name for people: its OpenAPI document's title.
PROJECT_NAME = "Example App"
