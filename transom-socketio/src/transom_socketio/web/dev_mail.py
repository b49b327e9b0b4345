"""``GET /dev/mail``: the development outbox, where account mail goes without SMTP_URL.

Served only in development and test, and only while mail goes to the outbox (no
SMTP_URL): in production the route does not exist (404). It shows whoever asks every
recent mail with its links, which is the point on a developer's machine (the demo page
lists them) and why it never runs anywhere else.

It answers only requests addressed to this machine by name (``localhost``, a loopback
address) or to PUBLIC_URL's host (web/hosts.py), in test too: a web page the developer
visits could otherwise rebind its own domain to 127.0.0.1 (DNS rebinding), read the
outbox as same-origin, and take the reset links in it. Another ``Host`` gets 403
``forbidden_host``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..shapes import DateTimeOut, PublicShape
from .base import BaseHandler
from .errors import bad_request
from .hosts import addressed_here, forbidden_host
from .operations import operation

__all__ = ["DevMailHandler"]

MAX_ADDRESS = 254


class DevMail(PublicShape):
    id: str = Field(alias="_id")
    kind: str
    to: str
    subject: str
    text: str
    sent_at: DateTimeOut


class DevMailList(PublicShape):
    """The newest mail first"""

    mail: Annotated[list[DevMail], Field(max_length=50)]


class DevMailHandler(BaseHandler):
    async def check_request(self) -> None:
        await super().check_request()
        if not addressed_here(self.request, self.settings_.public_base_url):
            raise forbidden_host("the development outbox")

    @operation(
        "The development outbox (development and test only)",
        operation_id="devMail",
        description="The mail the app sent, newest first; absent in production and when "
        "SMTP_URL is set.",
        responses={200: DevMailList},
        errors=(400, 403, 503),
        tags=("development",),
        parameters=(
            {
                "name": "to",
                "in": "query",
                "required": False,
                "description": "only the mail to this address (any case)",
                "schema": {"type": "string", "maxLength": MAX_ADDRESS},
            },
        ),
    )
    async def get(self) -> None:
        to = self.get_query_argument("to", None)
        if to is not None and len(to) > MAX_ADDRESS:
            raise bad_request(f"to must be at most {MAX_ADDRESS} characters", field="to")
        outbox = self.services.outbox
        mail = [] if outbox is None else await outbox.list(to=to)
        self.write_json({"mail": mail})
