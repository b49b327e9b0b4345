"""This app's settings: its defaults, .env.example, and one-line errors naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo
from transom_socketio.config import ConfigError, variable
from transom_socketio.config import load_settings as load

from {{ cookiecutter.project_slug }}.settings import Settings

ENV_EXAMPLE = Path(__file__).parents[1] / ".env.example"


def read(tmp_path: Path, **environ: str) -> Settings:
    """This app's settings from exactly ``environ``, with no ``.env``."""
    return load(environ=environ, env_file=tmp_path / "missing.env", settings_class=Settings)


def test_the_defaults_name_this_app(tmp_path):
    settings = read(tmp_path)
    assert isinstance(settings, Settings)
    assert settings.mongodb_db == "{{ cookiecutter.project_slug }}"


def test_a_bad_value_stops_with_one_line_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError) as raised:
        read(tmp_path, PORT="eighty")
    assert str(raised.value) == "PORT must be an integer, got 'eighty'"


def documented_default(field: FieldInfo) -> str:
    """How ``.env.example`` writes a setting's default: empty when it is computed or unset."""
    default = field.default
    if field.default_factory is not None or default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(default)
    return str(default)


def test_env_example_lists_exactly_the_declared_settings():
    listed = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    declared = {variable(name): documented_default(f) for name, f in Settings.model_fields.items()}
    {%- if cookiecutter.message_queue == "redis" %}
    # This project was generated to share its rooms through Redis: .env.example sets it.
    declared["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    {%- endif %}
    assert listed == declared
