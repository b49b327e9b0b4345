"""The errors of the data model, free of HTTP: the web edge (web/base.py) answers each
with its status and the API's error shape.

Raise them from an entity or an action hook: ``raise Forbidden("only admins may")``.
"""

from __future__ import annotations

from ..config import ConfigError

__all__ = ["Conflict", "Forbidden", "Invalid", "NotFound", "TooManyRequests"]


class DomainError(Exception):
    """A write or read the model refuses; ``code`` is the API's ``error.code``."""

    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(DomainError):
    """A value is wrong: ``field`` names it."""

    code = "validation_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, **({"field": field} if field else {}))


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    code = "conflict"


class TooManyRequests(DomainError):
    """A limit was hit; the client may retry after ``retry_after`` seconds."""

    code = "too_many_requests"

    def __init__(self, retry_after: int, message: str = "too many requests, retry later") -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class ModelError(ConfigError):
    """A mistake in an entity or action module, found at start-up (one line)."""
