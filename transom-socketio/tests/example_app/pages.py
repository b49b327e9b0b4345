"""The demo page at ``/``: sign up, log in, connect a socket, send and receive messages.

The same page answers at ``/verify`` and ``/reset``, where the links of the account
mails point (``PUBLIC_URL/verify?token=...``): there it verifies the address, or asks
for the new password, with the token of the link.
"""

from __future__ import annotations

from transom_socketio.web.operations import Response, operation
from transom_socketio.web.pages import PageHandler

HTML = Response(
    "HTML",
    content_type="text/html",
    schema={"type": "string"},
    headers={"Content-Security-Policy": {"required": True, "schema": {"type": "string"}}},
)


class DemoPageHandler(PageHandler):
    @operation("The live demo page", operation_id="demoPage", responses={200: HTML})
    def get(self) -> None:
        self.render_page()

    def render_page(self) -> None:
        settings = self.services.settings
        self.render(
            "index.html",
            # The page's socket uses the transports the server accepts (SOCKETIO_TRANSPORTS).
            transports=",".join(settings.socketio_transports),
            # Whether login waits for the address to be verified (REQUIRE_VERIFIED_EMAIL).
            verify_email=str(settings.require_verified_email).lower(),
            # Where the development outbox is, if mail goes there (never in production).
            outbox="/dev/mail" if self.services.outbox is not None else "",
        )


class VerifyPageHandler(DemoPageHandler):
    @operation(
        "The demo page at a verification link: it verifies the address",
        operation_id="verifyPage",
        responses={200: HTML},
    )
    def get(self) -> None:
        self.render_page()


class ResetPageHandler(DemoPageHandler):
    @operation(
        "The demo page at a password-reset link: it asks for the new password",
        operation_id="resetPage",
        responses={200: HTML},
    )
    def get(self) -> None:
        self.render_page()
