"""Where a rendered mail goes: an SMTP server (``SMTP_URL``), or the development outbox.

``SmtpTransport`` sends each mail on a connection of its own with aiosmtplib:
``smtp://user:password@host:port`` (port 25 by default) upgrades with STARTTLS, and
the certificate must be valid; ``smtps://`` (port 465) speaks TLS from the first byte.
With a user name or password, STARTTLS is required: a server (or someone between it
and the app) that does not offer it gets no password and no mail, since a link in a
mail signs its reader in. Without credentials (a relay on the same host, say),
smtp:// goes in clear when the server offers no STARTTLS. The user name and password
are optional and percent-decoded, so a password may hold any character (``@`` as
``%40``, ``/`` as ``%2F``...). A malformed URL is refused with one line that never
repeats it: a password with an unencoded ``/`` reads as part of the port, which is why
no piece of the URL is echoed.

``DevOutbox``, used when no ``SMTP_URL`` is set (development and tests), stores each
mail in the ``dev_mail`` collection for a day; ``GET /dev/mail`` lists it, links and
all, so sign-up and password reset can be followed without a mail server.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ssl
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from ..db import Database, IndexSpec, now
from .message import Mail

__all__ = [
    "COLLECTION",
    "INDEXES",
    "KEEP_SECONDS",
    "DevOutbox",
    "MailTransport",
    "SmtpTransport",
    "build_message",
]

COLLECTION = "dev_mail"
KEEP_SECONDS = 24 * 3600  # the outbox keeps a mail for a day
INDEXES = [
    IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0}),
    IndexSpec(COLLECTION, [("to_lower", 1), ("sent_at", -1)]),
]
LIST_AT_MOST = 500
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_URL_SHAPE = "SMTP_URL must look like smtp://user:password@host:port or smtps://..."

MailDocument = dict[str, Any]


class MailTransport(Protocol):
    async def deliver(self, mail: Mail, sender: str) -> None:
        """Hand ``mail`` on, from ``sender`` (``MAIL_FROM``); raise if it was not taken."""
        ...


def build_message(mail: Mail, sender: str) -> EmailMessage:
    """The MIME message of ``mail``: one ``text/plain`` part in UTF-8."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(mail.text, charset="utf-8")
    return message


class SmtpTransport:
    """Delivers over SMTP, one connection per mail, each step within ``timeout`` seconds."""

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        implicit_tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.implicit_tls = implicit_tls
        self.username = username
        self._password = password
        self.timeout = timeout
        self._tls_context = tls_context  # None: the system's trusted certificates

    @classmethod
    def from_url(
        cls, url: str, timeout: float = 10.0, *, tls_context: ssl.SSLContext | None = None
    ) -> SmtpTransport:
        """The transport ``SMTP_URL`` describes; ValueError (one line, no part of the
        URL in it) if it is malformed. ``tls_context`` replaces the system's trusted
        certificates (a test server's own, say)."""
        try:
            parts = urlsplit(url.strip())
            scheme, hostname, port = parts.scheme.lower(), parts.hostname, parts.port
        except (ValueError, AttributeError, TypeError):
            # The port's error message would quote it: an unencoded "/" in a password
            # makes what follows read as the port.
            raise ValueError(
                f"{_URL_SHAPE} (a bad port? characters like / ? # @ : in the user name "
                "or password must be percent-encoded)"
            ) from None
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"{_URL_SHAPE} (unknown scheme)")
        if not hostname:
            raise ValueError(f"{_URL_SHAPE} (no host)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"{_URL_SHAPE} (it has a path, query or fragment: characters like / ? # in "
                "the user name or password must be percent-encoded)"
            )
        if port == 0:
            raise ValueError(f"{_URL_SHAPE} (port 0)")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(
            hostname,
            port or DEFAULT_PORTS[scheme],
            implicit_tls=scheme == "smtps",
            username=username,
            password=password,
            timeout=timeout,
            tls_context=tls_context,
        )

    @property
    def _start_tls(self) -> bool | None:
        """smtps:// speaks TLS already (False); smtp:// with credentials requires STARTTLS
        (True: the password never goes out in clear); without, STARTTLS if offered (None)."""
        if self.implicit_tls:
            return False
        return True if self.username or self._password else None

    def __repr__(self) -> str:  # never the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"SmtpTransport({scheme}://{user}{self.hostname}:{self.port})"

    async def deliver(self, mail: Mail, sender: str) -> None:
        await aiosmtplib.send(
            build_message(mail, sender),
            # The account's address alone, not whatever the To: header parses into.
            recipients=[mail.to],
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self._password,
            timeout=self.timeout,
            use_tls=self.implicit_tls,
            start_tls=self._start_tls,
            tls_context=self._tls_context,
        )


class DevOutbox:
    """The development outbox: mail kept in the database for a day, newest first."""

    def __init__(self, database: Database, keep_seconds: int = KEEP_SECONDS) -> None:
        self._collection = database[COLLECTION]
        self._keep = dt.timedelta(seconds=keep_seconds)

    async def deliver(self, mail: Mail, sender: str) -> None:
        sent_at = now()
        await self._collection.insert_one(
            {
                "kind": mail.kind,
                "to": mail.to,
                "to_lower": mail.to.lower(),
                "subject": mail.subject,
                "text": mail.text,
                "sent_at": sent_at,
                "expires_at": sent_at + self._keep,
            }
        )

    async def list(self, to: str | None = None, limit: int = 50) -> list[MailDocument]:
        """The newest ``limit`` mails (to ``to``, in any case, if given), newest first:
        ``{"_id": str, "kind", "to", "subject", "text", "sent_at"}`` each. A blank ``to``
        is no filter."""
        wanted = (to or "").strip().lower()
        query = {"to_lower": wanted} if wanted else {}
        cursor = (
            self._collection.find(query, projection={"to_lower": 0, "expires_at": 0})
            .sort([("sent_at", -1), ("_id", -1)])
            .limit(max(1, min(limit, LIST_AT_MOST)))
        )
        found = [document async for document in cursor]
        for document in found:
            document["_id"] = str(document["_id"])
        return found
