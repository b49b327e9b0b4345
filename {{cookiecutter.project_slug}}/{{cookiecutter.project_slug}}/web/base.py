"""The base of every REST handler: JSON in and out, errors, the caller, the registry.

Subclass ``BaseHandler`` (or ``AuthenticatedHandler`` for routes that need a
logged-in user) and you get, for free:

- ``self.json_body()``: the request body as a JSON object, or a 400;
- ``self.current_user``: the ``Principal`` of the Bearer JWT (authenticated routes);
- ``self.services``: the app's services, typed (``self.services.message_client``...);
- ``self.registry``: the same under the transom names (``self.registry['transomMsgClient']``);
- ``self.write_json(payload, status)``;
- every exception turned into ``{"error": {"code", "message"}}`` with the right
  status, and never a traceback sent to the client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import tornado.web
from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout

from .. import jsonutil, logs
from ..auth.passwords import HashingBusy
from ..auth.tokens import InvalidToken, Principal
from ..registry import Registry

if TYPE_CHECKING:
    from ..services import Services
from .errors import ApiError, JsonErrorHandler, busy, standard_error, unauthorized

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now": answered with 503.
DATABASE_DOWN = (ConnectionFailure, AutoReconnect, NetworkTimeout, ExecutionTimeout)

JSON_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@tornado.web.stream_request_body
class BaseHandler(JsonErrorHandler):
    """JSON API handler. The body is streamed so oversized bodies get a JSON 413."""

    current_user: Principal | None

    def initialize(self) -> None:
        self.registry: Registry = self.application.settings["registry"]
        self.services: Services = self.application.settings["services"]
        self.settings_ = self.services.settings
        self._body_chunks: list[bytes] = []
        self._body_size = 0
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

    async def prepare(self) -> None:
        """Run ``check_request``; an error it raises is answered before the body is read."""
        self.set_header("X-Request-ID", self.request_id)
        try:
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

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object; 400 for anything else (invalid JSON, a list...)."""
        raw = self.body_bytes()
        if not raw.strip():
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        try:
            value = jsonutil.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
            raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        return value

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(jsonutil.dumps(payload))

    def error_response(
        self, status_code: int, error: BaseException | None
    ) -> tuple[int, dict[str, Any]]:
        if self._answered_early:
            self.set_header("Connection", "close")
        if isinstance(error, HashingBusy):
            error = busy()
        if isinstance(error, ApiError):
            for name, value in error.headers.items():
                self.set_header(name, value)
            return error.status, error.body()
        return standard_error(503 if isinstance(error, DATABASE_DOWN) else status_code)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError | HashingBusy):
            return  # expected client errors and back-pressure: the access log has the status
        if isinstance(value, DATABASE_DOWN):
            log.warning("database unavailable: %s %s", self.request.method, self.request.path)
            return
        super().log_exception(typ, value, tb)


class AuthenticatedHandler(BaseHandler):
    """A handler whose every method requires ``Authorization: Bearer <JWT>``."""

    current_user: Principal

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
            return await tokens.authenticate(token.strip())
        except InvalidToken as error:
            raise unauthorized("invalid_token", str(error)) from None


class NotFoundHandler(BaseHandler):
    """Every unknown route: a JSON 404 whatever the method."""

    async def check_request(self) -> None:
        await super().check_request()
        raise ApiError(404, "not_found", f"no route for {self.request.path}")
