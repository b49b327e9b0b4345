"""The base of every REST handler: JSON in and out, errors, the caller, the registry.

Subclass ``BaseHandler`` (or ``AuthenticatedHandler`` for routes that need a
logged-in user) and you get, for free:

- ``self.json_body(Model)``: the request body checked by a pydantic model, or a 400
  naming the field (``self.json_body()``: any JSON object); ``self.request.body`` and
  ``self.get_body_argument()`` work too: the body is streamed in (so a body over
  MAX_BODY_BYTES gets a JSON 413 before it is read) and kept in ``request.body``;
- ``self.current_user``: the ``Principal`` of the Bearer JWT (authenticated routes);
- ``self.services``: the app's services, typed (``self.services.message_client``...);
- ``self.registry``: the same under the transom names (``self.registry['transomMsgClient']``);
- ``self.write_json(payload, status)``;
- ``self.page_arguments(default, maximum)``: a list's ``before`` and ``limit``;
- ``@operation(...)`` on each method: its entry in the OpenAPI document (web/openapi.py)
  and, in development and test, the contract every answer is checked against
  (web/response_checks.py: a mismatch is logged, and answered 500 in tests);
- errors of the data model (models/errors.py) and every exception turned into
  ``{"error": {"code", "message"}}`` with the right status, never a traceback.
"""

from __future__ import annotations

import logging
import re
from asyncio import Future
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

import tornado.escape
import tornado.httputil
import tornado.web
from bson import ObjectId
from pydantic import BaseModel, ValidationError
from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout

from .. import jsonutil, logs
from ..auth.passwords import HashingBusy
from ..auth.tokens import InvalidToken, Principal
from ..auth.users import parse_object_id
from ..models.errors import DomainError
from ..registry import Registry
from ..shapes import explain
from . import cors, response_checks
from .errors import (
    ApiError,
    JsonErrorHandler,
    bad_request,
    busy,
    from_domain,
    standard_error,
    unauthorized,
)

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["AuthenticatedHandler", "BaseHandler"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# A list's ``limit``: digits only ("²".isdigit() is true), at most six of them.
PAGE_LIMIT = re.compile(r"[0-9]{1,6}")

# Errors that mean "the database is not reachable right now": answered with 503.
DATABASE_DOWN = (ConnectionFailure, AutoReconnect, NetworkTimeout, ExecutionTimeout)

JSON_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or a
    ``application/<name>+json``, with any parameters (``; charset=utf-8``)."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


@tornado.web.stream_request_body
class BaseHandler(JsonErrorHandler):
    """JSON API handler. The body is streamed so oversized bodies get a JSON 413."""

    current_user: Principal | None
    # Whether answers are checked against the operation's declaration (Settings.checks_responses).
    _checks_responses = False

    def compute_etag(self) -> str | None:
        """None: an answer carries an ``ETag`` only when its handler sets one (an
        entity's version). Tornado's default, a SHA-1 of every GET's body, answered 304
        to ``If-None-Match``, which no operation documents (found by a review)."""
        return None

    def __init__(
        self,
        application: tornado.web.Application,
        request: tornado.httputil.HTTPServerRequest,
        **kwargs: Any,
    ) -> None:
        # The route's arguments: the operations of a generic handler depend on them.
        self._route_kwargs = kwargs
        super().__init__(application, request, **kwargs)

    def initialize(self) -> None:
        self.registry: Registry = self.application.settings["registry"]
        self.services: Services = self.application.settings["services"]
        self.settings_ = self.services.settings
        self._checks_responses = self.settings_.checks_responses
        self._body_chunks: list[bytes] = []
        self._body_size = 0
        self._form_parsed = False
        # Set when the answer goes out before the request was read to its end: Tornado
        # then closes the connection, so the answer says ``Connection: close``.
        self._answered_early = False
        self.request_id = logs.start_request(self.request)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in JSON_SECURITY_HEADERS.items():
            self.set_header(name, value)
        # send_error() resets the headers to these defaults: keep the request id on errors.
        request_id = getattr(self, "request_id", None)
        if request_id is not None:
            self.set_header("X-Request-ID", request_id)
        cors.expose(self)

    async def prepare(self) -> None:
        """Run ``check_request``; an error it raises is answered before the body is read."""
        self.set_header("X-Request-ID", self.request_id)
        try:
            if self.request.method == "OPTIONS" and cors.answer_preflight(self):
                return  # a browser's CORS preflight, answered before authentication
            await self.check_request()
        except Exception:
            self._answered_early = True
            raise

    async def check_request(self) -> None:
        """Checks made before the body is read and the method runs (authentication,
        limits). Override it, not ``prepare``, and call ``super().check_request()``."""
        declared = self.request.headers.get("Content-Length", "")
        too_long = declared.isascii() and declared.isdigit()  # "²".isdigit() is true
        if too_long and int(declared) > self.settings_.max_body_bytes:
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # already answered 413; the rest of the body is dropped
        self._body_size += len(chunk)
        if self._body_size > self.settings_.max_body_bytes:
            # Raising here would only drop the connection (Tornado does not route
            # data_received errors to write_error), so answer now, and end the wait
            # for the body so the HTTP method never runs.
            self._body_chunks.clear()
            self._answered_early = True
            error = self._too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))
            self.on_connection_close()
            return
        self._body_chunks.append(chunk)
        # What Tornado would have buffered: a handler may read ``self.request.body``.
        self.request.body = self.body_bytes()

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            "payload_too_large",
            f"the request body must be at most {self.settings_.max_body_bytes} bytes",
        )

    @property
    def client_ip(self) -> str:
        return self.request.remote_ip or "unknown"

    def body_bytes(self) -> bytes:
        return b"".join(self._body_chunks)

    def _parse_form(self) -> None:
        """Form fields of the body, as Tornado parses them for the bodies it buffers
        (``get_argument`` and ``get_body_argument`` read them)."""
        if self._form_parsed or not self.request.body:
            return
        self._form_parsed = True
        tornado.httputil.parse_body_arguments(
            self.request.headers.get("Content-Type", ""),
            self.request.body,
            self.request.body_arguments,
            self.request.files,
            self.request.headers,
        )
        for name, values in self.request.body_arguments.items():
            self.request.arguments.setdefault(name, []).extend(values)

    def get_body_argument(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._parse_form()
        return super().get_body_argument(name, *args, **kwargs)

    def get_body_arguments(self, name: str, strip: bool = True) -> list[str]:
        self._parse_form()
        return super().get_body_arguments(name, strip)

    def get_argument(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._parse_form()
        return super().get_argument(name, *args, **kwargs)

    def get_arguments(self, name: str, strip: bool = True) -> list[str]:
        self._parse_form()
        return super().get_arguments(name, strip)

    @overload
    def json_body(self) -> dict[str, Any]: ...

    @overload
    def json_body(self, model: type[M]) -> M: ...

    def json_body(self, model: type[M] | None = None) -> dict[str, Any] | M:
        """The body as a JSON object, checked by ``model`` if given; 400 for anything else
        (invalid JSON, a list, a field ``model`` refuses: ``validation_error`` naming it)."""
        value = self._json_object()
        if model is None:
            return value
        try:
            return model.model_validate(value)
        except ValidationError as error:
            message, field = explain(error)
            raise bad_request(message, field=field) from None

    def _json_object(self) -> dict[str, Any]:
        raw = self.body_bytes()
        if not raw.strip():
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        if not is_json_media_type(self.request.headers.get("Content-Type", "")):
            # A page on another site can send a body as text/plain (or with no type)
            # without asking first; application/json takes a CORS preflight, which this
            # API, sending no CORS headers, refuses. So the routes no token guards
            # (signup, the mail and reset routes) act only on requests of the app's
            # own pages and of clients that are not browsers.
            raise ApiError(
                415,
                "unsupported_media_type",
                "the request body must be sent with Content-Type: application/json",
            )
        try:
            value = jsonutil.loads_body(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is one; RecursionError: nesting
            raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        return value

    def page_arguments(self, default: int, maximum: int) -> tuple[ObjectId | None, int]:
        """A list's ``before`` (the id the page ends before, or None) and ``limit``
        (``default`` when absent, 1 to ``maximum``); 400 naming the argument else."""
        raw_limit = self.get_query_argument("limit", None)
        limit = default
        if raw_limit is not None:
            if not PAGE_LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= maximum:
                raise bad_request(f"limit must be an integer from 1 to {maximum}", field="limit")
            limit = int(raw_limit)
        raw_before = self.get_query_argument("before", None)
        before = None
        if raw_before is not None:
            before = parse_object_id(raw_before)
            if before is None:
                raise bad_request("before must be an id (24 hex digits)", field="before")
        return before, limit

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(jsonutil.dumps(payload))

    def clear(self) -> None:
        super().clear()
        self._answer: list[bytes] = []  # the body written so far (kept when it is checked)

    def write(self, chunk: str | bytes | dict[str, Any]) -> None:
        super().write(chunk)
        if self._checks_responses:
            encoded = tornado.escape.json_encode(chunk) if isinstance(chunk, dict) else chunk
            self._answer.append(tornado.escape.utf8(encoded))

    def finish(self, chunk: str | bytes | dict[Any, Any] | None = None) -> Future[None]:
        if self._checks_responses and not self._finished and not self._headers_written:
            if chunk is not None:
                self.write(chunk)
                chunk = None
            try:
                self._check_response()
            except Exception:  # a fault of the check must not cost the answer
                response_checks.log.exception("response check failed")
        return super().finish(chunk)

    def _check_response(self) -> None:
        """The answer about to go out, checked against the operation of this method
        (web/response_checks.py): a mismatch is logged, and in tests answered 500."""
        method = (self.request.method or "").lower()
        cache = response_checks.operations_cache(self.application.settings)
        op = response_checks.route_operations(cache, type(self), self._route_kwargs).get(method)
        if op is None:
            return  # a method without a declaration: nothing to check against
        name = response_checks.operation_name(type(self), method, op)
        content_type = str(self._headers.get("Content-Type", ""))
        body = b"".join(self._answer)
        found = response_checks.mismatch(
            name, op, self.get_status(), body, content_type, before_method=self._answered_early
        )
        if found is None:
            return
        response_checks.log.error("response mismatch: %s (values not logged)", found.describe())
        if self.settings_.app_env == "test":
            self.clear()
            if self._answered_early:
                self.set_header("Connection", "close")
            self.set_status(500)
            self.write(jsonutil.dumps(found.body()))

    def error_response(
        self, status_code: int, error: BaseException | None
    ) -> tuple[int, dict[str, Any]]:
        if self._answered_early:
            self.set_header("Connection", "close")
        if isinstance(error, HashingBusy):
            error = busy()
        if isinstance(error, DomainError):
            error = from_domain(error)
        if isinstance(error, ApiError):
            for name, value in error.headers.items():
                self.set_header(name, value)
            return error.status, error.body()
        return standard_error(503 if isinstance(error, DATABASE_DOWN) else status_code)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError | HashingBusy | DomainError):
            return  # expected client errors and back-pressure: the access log has the status
        if isinstance(value, DATABASE_DOWN):
            log.warning("database unavailable: %s %s", self.request.method, self.request.path)
            return
        super().log_exception(typ, value, tb)


class AuthenticatedHandler(BaseHandler):
    """A handler whose every method requires ``Authorization: Bearer <JWT>``."""

    current_user: Principal
    # Whether a check made here recently, that the JWT is not revoked, will do instead of
    # a database read (``TokenService.authenticate``): set on the socket-token routes,
    # whose handshake asks again whether the JWT's sessions ended since that check.
    recent_revocation_check_will_do: ClassVar[bool] = False

    async def check_request(self) -> None:
        await super().check_request()
        self.current_user = await self.authenticate()
        logs.bind_user(self.current_user.user_id)

    async def authenticate(self) -> Principal:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise unauthorized()
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("invalid_token", "the Authorization header must be 'Bearer <token>'")
        tokens = self.services.tokens
        try:
            return await tokens.authenticate(token.strip(), self.recent_revocation_check_will_do)
        except InvalidToken as error:
            raise unauthorized("invalid_token", str(error)) from None


class NotFoundHandler(BaseHandler):
    """Every unknown route: a JSON 404 whatever the method."""

    async def check_request(self) -> None:
        await super().check_request()
        raise ApiError(404, "not_found", f"no route for {self.request.path}")
