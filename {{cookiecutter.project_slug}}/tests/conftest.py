"""Fixtures: the app served by pytest-tornado on a real database, with real clients.

They come from transom-socketio's pytest plugin: ``app``, ``settings`` (change it per
test with ``settings_overrides``), ``api`` (a JSON client with ``new_user``,
``socket_token``...), ``sockets`` (python-socketio clients that record what they
receive), ``registry``, ``db``. The database is SecantusDB started in-process, unless
MONGODB_URI names a real server; each test gets a database of its own.
"""

from __future__ import annotations

from collections.abc import Callable
{%- if cookiecutter.message_queue == "redis" %}
from typing import Any
{%- endif %}

import pytest

from {{ cookiecutter.project_slug }}.app import make_app as app_factory
from {{ cookiecutter.project_slug }}.settings import Settings

pytest_plugins = ["transom_socketio.testing.plugin"]


@pytest.fixture
def make_app() -> Callable[..., object]:
    return app_factory


@pytest.fixture
def settings_class() -> type[Settings]:
    return Settings
{%- if cookiecutter.message_queue == "redis" %}


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    """Every test runs on the Redis of .env.example (the plugin gives each its channel)."""
    return {**test_settings, "redis_url": "redis://127.0.0.1:6379/0"}
{%- endif %}
