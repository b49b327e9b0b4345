"""The data model: every entity served under ``/api/v1/db/<name>``.

To add an entity, write ``models/<name>.py`` (an ``Entity`` subclass and its
``ENTITY``), optionally ``models/actions/<name>.py``, and list it below.
"""

from __future__ import annotations

from transom_socketio.models.base import Entity

from . import message

ENTITIES: tuple[Entity, ...] = (message.ENTITY,)

# Where each entity's hooks live: models/actions/<entity>.py.
ACTIONS_PACKAGE = f"{__name__}.actions"

# The indexes the entities declare (Entity.indexes), created at start-up.
INDEXES = [index for entity in ENTITIES for index in entity.indexes()]

__all__ = ["ACTIONS_PACKAGE", "ENTITIES", "INDEXES", "Entity"]
