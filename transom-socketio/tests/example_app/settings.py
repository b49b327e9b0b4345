"""This app's settings: the library's (``transom_socketio.config.Settings``) and its own.

Every setting is one field, read from the environment variable of its name in capitals
and from ``.env`` (``.env.example`` lists them all). Add the app's own settings here as
fields; a bad value stops start-up with one line naming the variable.
"""

from __future__ import annotations

from pydantic import Field

from transom_socketio.config import Settings as EngineSettings
from transom_socketio.config import load_settings as load


class Settings(EngineSettings):
    mongodb_db: str = Field("example_app", description="The database name.")


def load_settings() -> Settings:
    """The settings of this process, from the environment and ``.env``."""
    return load(settings_class=Settings)
