"""The demo page at ``/``: log in, connect a socket, send and receive messages."""

from __future__ import annotations

from transom_socketio.web.operations import Response, operation
from transom_socketio.web.pages import PageHandler


class DemoPageHandler(PageHandler):
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
        # The page's socket uses the transports the server accepts (SOCKETIO_TRANSPORTS).
        transports = self.services.settings.socketio_transports
        self.render("index.html", transports=",".join(transports))
