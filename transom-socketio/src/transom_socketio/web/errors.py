"""The one error type the API raises on purpose, and its JSON shape.

Raise ``ApiError`` anywhere below a handler (including model actions) and the
client receives ``{"error": {"code": ..., "message": ...}}`` with its status.
Every other error (a wrong method, a missing static file, a crash) gets the same
shape from ``standard_error``.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import tornado.web
from pydantic import BaseModel, ConfigDict, Field
from tornado.web import HTTPError

from .. import jsonutil
from ..models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooManyRequests

STANDARD_CODES = {
    400: ("bad_request", "the request is malformed"),
    401: ("authentication_required", "a valid Bearer token is required"),
    403: ("forbidden", "not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "this method is not allowed here"),
    413: ("payload_too_large", "the request body is too large"),
    503: ("database_unavailable", "the database is not reachable, try again soon"),
}
INTERNAL_ERROR = ("internal_error", "something went wrong on our side")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent, never null


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # what an ApiError adds (its details)

    code: str = Field(pattern="^[a-z][a-z0-9_]*$")
    message: str = Field(min_length=1)
    field: str = Field(
        cast(str, None), description="the field at fault", json_schema_extra=_no_default
    )
    retry_after: int = Field(cast(int, None), ge=1, json_schema_extra=_no_default)


class Error(BaseModel):
    """The body of every error: ``{"error": {"code", "message"[, "field", "retry_after"]}}``."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail

    @classmethod
    def body(cls, code: str, message: str, **details: Any) -> dict[str, Any]:
        detail = ErrorDetail(code=code, message=message, **details)
        return cls(error=detail).model_dump(exclude_none=True)


def standard_error(status_code: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for an error that is not an ``ApiError``.

    A server error is answered as a plain 500 whatever its cause; a client error
    keeps its status (``client_error`` when it has no code of its own here).
    """
    if status_code in STANDARD_CODES:
        code, message = STANDARD_CODES[status_code]
    elif 400 <= status_code < 500:
        code, message = "client_error", f"the request failed with status {status_code}"
    else:
        status_code = 500
        code, message = INTERNAL_ERROR
    return status_code, Error.body(code, message)


class NoServerHeader(tornado.web.RequestHandler):
    """A handler whose responses do not name the server.

    Tornado answers every response with ``Server: TornadoServer/<version>``, the exact
    release the fast path (``realtime/accel/``) is built for: a gift to whoever looks
    for a known flaw. ``clear`` sets the default headers of a response, and of an
    error that replaces it (``send_error``)."""

    def clear(self) -> None:
        super().clear()
        self.clear_header("Server")


class JsonErrorHandler(NoServerHeader):
    """A handler whose errors answer in the API's JSON shape, whatever raised them.

    The API's handlers build on it, and so do the others (the demo page, its static
    files, ``/metrics``, through ``BodilessHandler``: mix it in before their base
    class). None names the server.

    Each one that serves ``GET`` also serves ``HEAD``: the same checks, status and
    headers (``Content-Length`` included), without the body (RFC 9110 §9.3.2;
    Tornado drops the body of a HEAD answer). A handler whose GET is not safe (it
    issues or changes something) sets ``head_like_get = False`` and HEAD answers 405.
    """

    head_like_get: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        serves_get = cls.get is not tornado.web.RequestHandler.get
        if cls.head_like_get and serves_get and cls.head is tornado.web.RequestHandler.head:
            cls.head = _head_like_get
        elif not (cls.head_like_get and serves_get) and cls.head is _head_like_get:
            cls.head = tornado.web.RequestHandler.head

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        status, body = self.error_response(status_code, error)
        self.set_status(status)
        # A handler may have set headers for a success response; errors are JSON.
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(jsonutil.dumps(body))

    def error_response(
        self, status_code: int, error: BaseException | None
    ) -> tuple[int, dict[str, Any]]:
        """The status and body to answer ``error`` with (``status_code``: Tornado's)."""
        if isinstance(error, ApiError):
            for name, value in error.headers.items():
                self.set_header(name, value)
            return error.status, error.body()
        return standard_error(status_code)


def _head_like_get(self: tornado.web.RequestHandler, *args: Any, **kwargs: Any) -> Any:
    return self.get(*args, **kwargs)


@tornado.web.stream_request_body
class BodilessHandler(JsonErrorHandler):
    """A ``JsonErrorHandler`` that reads no request body: the demo page, its static
    files, ``/metrics``.

    Tornado buffers the body of a handler that does not stream it, whole, up to
    server.py's HARD_BODY_LIMIT (16 MiB) a request, before the handler runs. Here the
    body is dropped as it arrives, and one over MAX_BODY_BYTES (by its Content-Length,
    or as soon as a chunked body passes it) is answered 413 at once, like the API's,
    with ``Connection: close``.
    """

    _body_seen = 0
    _body_refused = False

    def _body_limit(self) -> int:
        return int(self.application.settings["services"].settings.max_body_bytes)

    def prepare(self) -> Any:
        declared = self.request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._body_limit():
            self._body_refused = True
            raise self._too_large()
        return super().prepare()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # already answered 413: the rest is dropped
        self._body_seen += len(chunk)
        if self._body_seen > self._body_limit():
            self._body_refused = True
            error = self._too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))
            self.on_connection_close()  # ends the wait for the body: the method never runs

    def _too_large(self) -> ApiError:
        limit = self._body_limit()
        return ApiError(413, "payload_too_large", f"the request body must be at most {limit} bytes")

    def error_response(
        self, status_code: int, error: BaseException | None
    ) -> tuple[int, dict[str, Any]]:
        if self._body_refused:
            self.set_header("Connection", "close")
        return super().error_response(status_code, error)


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
        return Error.body(self.code, self.message, **self.details)


def bad_request(message: str, *, field: str | None = None) -> ApiError:
    details: dict[str, Any] = {"field": field} if field else {}
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


def busy(retry_after: int = 1) -> ApiError:
    return ApiError(
        503,
        "busy",
        "the server is busy, try again shortly",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


# The status of each error of the data model (models/errors.py).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    Invalid: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooManyRequests: 429,
}


def from_domain(error: DomainError) -> ApiError:
    """The HTTP answer to an error of the data model."""
    status = next((s for kind, s in DOMAIN_STATUS.items() if isinstance(error, kind)), 400)
    headers = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    return ApiError(status, error.code, error.message, headers=headers, **error.details)
