"""The base of the administration API's handlers: a signed-in member of ``admin``.

``AdminHandler`` answers 401 to a request without a valid JWT and 403 ``forbidden``
to one whose user is not in the ``admin`` group, before the body is read.
``page_arguments`` reads the ``limit`` and ``before`` of a list, as the entity lists
take them (``PAGE_PARAMETERS`` documents them).
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId

from ..auth.admin import require_admin
from ..auth.users import parse_object_id
from .base import AuthenticatedHandler
from .errors import bad_request

__all__ = ["PAGE_PARAMETERS", "USER_ID_PARAMETER", "AdminHandler", "page_arguments"]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
DIGITS = re.compile(r"[0-9]{1,6}")

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
    raw_limit = handler.get_query_argument("limit", None)
    limit = PAGE_SIZE
    if raw_limit is not None:
        if not DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
            raise bad_request(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", field="limit")
        limit = int(raw_limit)
    raw_before = handler.get_query_argument("before", None)
    before = None
    if raw_before is not None:
        before = parse_object_id(raw_before)
        if before is None:
            raise bad_request("before must be an id (24 hex digits)", field="before")
    return before, limit
