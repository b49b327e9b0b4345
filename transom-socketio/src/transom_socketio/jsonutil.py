"""JSON encoding shared by HTTP responses and Socket.IO packets.

MongoDB documents carry ``ObjectId`` and ``datetime`` values; they go out as the
hex string and ISO 8601 text. Passing this module as ``json=`` to the Socket.IO
server makes ``emitToUsers(..., data)`` accept stored documents as they are.
"""

from __future__ import annotations

import datetime as dt
import json as _json
from typing import Any

from bson import ObjectId

JSONDecodeError = _json.JSONDecodeError


def default(value: Any) -> Any:
    """Encode the BSON values that the standard library does not know."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("separators", (",", ":"))
    kwargs.setdefault("ensure_ascii", False)
    return _json.dumps(value, default=default, **kwargs)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    return _json.loads(text, **kwargs)
