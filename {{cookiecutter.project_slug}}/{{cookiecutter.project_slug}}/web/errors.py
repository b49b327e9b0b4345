"""The one error type the API raises on purpose, and its JSON shape.

Raise ``ApiError`` anywhere below a handler (including model actions) and the
client receives ``{"error": {"code": ..., "message": ...}}`` with its status.
"""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError


class ApiError(HTTPError):
    """An error the client caused or must know about; never logged as a server fault.

    It is a Tornado ``HTTPError``, so raising it from a handler (or from anything a
    handler awaits) ends the request with this status and JSON body.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(status, reason=None)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def bad_request(message: str, *, field: str | None = None) -> ApiError:
    details = {"field": field} if field else {}
    return ApiError(400, "validation_error", message, **details)


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(code: str = "authentication_required", message: str | None = None) -> ApiError:
    return ApiError(
        401,
        code,
        message or "a valid Bearer token is required",
        headers={"WWW-Authenticate": 'Bearer realm="api"'},
    )


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def too_many_requests(
    retry_after: int, message: str = "too many requests, retry later"
) -> ApiError:
    return ApiError(
        429,
        "too_many_requests",
        message,
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "the database is not reachable, try again soon")
