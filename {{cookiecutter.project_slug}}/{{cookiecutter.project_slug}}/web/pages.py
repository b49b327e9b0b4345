"""The demo page at ``/``: log in, connect a socket, send and receive messages."""

from __future__ import annotations

import tornado.web

from .. import logs
from .. import registry as keys

# The page loads only its own scripts and styles, and talks only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class DemoPageHandler(tornado.web.RequestHandler):
    def initialize(self) -> None:
        self.request_id = logs.start_request(self.request)

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")

    def get(self) -> None:
        settings = self.application.settings["registry"][keys.SETTINGS]
        # The page's socket uses the transports the server accepts (SOCKETIO_TRANSPORTS).
        self.render("index.html", transports=",".join(settings.socketio_transports))
