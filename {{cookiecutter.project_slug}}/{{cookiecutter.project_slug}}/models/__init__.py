"""The data model: every entity served under ``/api/v1/db/<name>``.

To add an entity, write ``models/<name>.py`` (an ``Entity`` subclass and its
``ENTITY``), optionally ``models/actions/<name>.py``, and list it below.
"""

from __future__ import annotations

from . import message
from .base import Entity

ENTITIES: tuple[Entity, ...] = (message.ENTITY,)

__all__ = ["ENTITIES", "Entity"]
