"""JSON encoding shared by HTTP responses and Socket.IO packets.

MongoDB documents carry ``ObjectId`` and ``datetime`` values; they go out as the
hex string and ISO 8601 text. Passing this module as ``json=`` to the Socket.IO
server makes ``emitToUsers(..., data)`` accept stored documents as they are.
"""

from __future__ import annotations

import datetime as dt
import json as _json
import math
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


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999
        raise ValueError("a number out of range")
    return number


def loads_body(raw: bytes) -> Any:
    """A request body as RFC 8259 JSON: UTF-8 only (``json.loads`` of bytes would also
    read UTF-16 and UTF-32, which anything in front that reads UTF-8 would see as
    something else), and no ``NaN``, ``Infinity`` or number beyond a double's range
    (which the API would store and then answer as invalid JSON). ValueError else."""
    return _json.loads(raw.decode("utf-8"), parse_constant=_not_json, parse_float=_finite)
