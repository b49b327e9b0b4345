"""The demo page at ``/``: log in, connect a socket, send and receive messages."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tornado.web

from .. import logs
from .errors import BodilessHandler
from .operations import Response, operation

if TYPE_CHECKING:
    from ..services import Services

# The page loads only its own scripts and styles, and talks only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class DemoPageHandler(BodilessHandler):
    def initialize(self) -> None:
        self.request_id = logs.start_request(self.request)

    def set_default_headers(self) -> None:
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)

    @operation(
        "The live demo page",
        operation_id="demoPage",
        responses={
            200: Response(
                "HTML",
                content_type="text/html",
                schema={"type": "string"},
                headers={
                    "Content-Security-Policy": {"required": True, "schema": {"type": "string"}}
                },
            )
        },
    )
    def get(self) -> None:
        services: Services = self.application.settings["services"]
        # The page's socket uses the transports the server accepts (SOCKETIO_TRANSPORTS).
        transports = services.settings.socketio_transports
        self.render("index.html", transports=",".join(transports))


# A file name holds no control character (a NUL makes os.path raise ValueError) and
# no backslash; anything else is looked up and, if absent, answered 404.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


class StaticFiles(BodilessHandler, tornado.web.StaticFileHandler):
    """The page's scripts and styles, with the page's security headers."""

    def set_default_headers(self) -> None:
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)

    def parse_url_path(self, url_path: str) -> str:
        if _UNSAFE_NAME.search(url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)
