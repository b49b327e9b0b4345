"""The base of the administration API's handlers: a signed-in member of ``admin``.

``AdminHandler`` answers 401 to a request without a valid JWT and 403 ``forbidden``
to one whose user is not in the ``admin`` group, before the body is read.
``page_arguments`` reads the ``limit`` and ``before`` of a list, as the entity lists
take them (``PAGE_PARAMETERS`` documents them).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from ..auth.admin import require_admin
from .base import AuthenticatedHandler

__all__ = ["PAGE_PARAMETERS", "USER_ID_PARAMETER", "AdminHandler", "page_arguments"]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

PAGE_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    },
    {
        "name": "before",
        "in": "query",
        "required": False,
        "description": "the `next` of the previous page",
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"},
    },
)
USER_ID_PARAMETER: dict[str, Any] = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"},
}


class AdminHandler(AuthenticatedHandler):
    """A handler whose every method requires a JWT of a member of ``admin``."""

    async def check_request(self) -> None:
        await super().check_request()
        require_admin(self.current_user)


def page_arguments(handler: AuthenticatedHandler) -> tuple[ObjectId | None, int]:
    """``before`` (an id, or None) and ``limit`` (1 to MAX_PAGE_SIZE) of a list; 400 else."""
    return handler.page_arguments(PAGE_SIZE, MAX_PAGE_SIZE)
