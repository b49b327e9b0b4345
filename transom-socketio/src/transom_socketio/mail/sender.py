"""Sending account mail without holding a request, and without losing it to one failure.

``Mailer.send`` renders the mail at once (a template error is the caller's), then hands
it to a background task and returns: a sign-up or a password reset answers whether or
not the mail server is up. The task tries ``attempts`` times, waiting between tries
``first_retry_seconds``, doubled each time up to ``max_retry_seconds``, with jitter
(between half and all of that) so that mail queued during an outage does not all
retry at once. A permanent refusal (an SMTP 5xx answer) is not retried. If every try
fails, the mail is dropped with one ERROR line: the account is unharmed, and the user
can ask for the mail again.

Log lines (logger ``transom_socketio.mail``) name the mail's kind, the try, the
recipient's domain and the failure's class with a short reason built from the error's
code (an SMTP status, an errno), never its message: a server's reply can quote the
recipient, and nothing here ever logs the subject, body or link, which holds the token.

``drain`` waits for deliveries in flight (at shutdown, and in tests); ``close`` drains,
then cancels what is left, logging each mail it abandons.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import secrets
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiosmtplib

from .message import Mail, one_line
from .templates import MailTemplates
from .transports import MailTransport

__all__ = ["Mailer", "failure_reason"]

log = logging.getLogger("transom_socketio.mail")

# "4.3.0" at the start of a reply: an enhanced status code (RFC 3463), safe to log.
_ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_RESOLVER_ERRORS = {
    getattr(socket, name): name for name in dir(socket) if name.startswith("EAI_")
}  # EAI_NONAME...
_jitter = secrets.SystemRandom()


def failure_reason(error: BaseException) -> str:
    """``SMTPResponseException (451 4.3.0)``, ``SMTPConnectError (ECONNREFUSED)``: the
    class and the codes of a failure, none of its text."""
    codes: list[str] = []
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({str(refused.code) for refused in error.recipients})
    elif isinstance(error, aiosmtplib.SMTPResponseException):
        codes = [str(error.code)]
        enhanced = _ENHANCED_STATUS.match(error.message)
        if enhanced:
            codes.append(enhanced.group(1))
    else:
        cause: BaseException | None = error
        for _depth in range(4):  # aiosmtplib wraps the OSError it met
            if cause is None or codes:
                break
            number = getattr(cause, "errno", None)
            if isinstance(cause, ssl.SSLError):  # its errno is OpenSSL's, its reason a name
                codes = [str(cause.reason or "SSL")]
            elif isinstance(cause, socket.gaierror):
                codes = [_RESOLVER_ERRORS.get(number, "EAI")]
            elif isinstance(number, int) and number in errno.errorcode:
                codes = [errno.errorcode[number]]
            elif isinstance(cause, TimeoutError):
                codes = ["timeout"]
            cause = cause.__cause__ or cause.__context__
    name = type(error).__name__
    return f"{name} ({' '.join(codes)})" if codes else name


def _permanent(error: BaseException) -> bool:
    """Whether trying again cannot help: the server refused the mail for good (5xx)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(r.code >= 500 for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return 500 <= error.code < 600
    return False


def _notify(callback: Callable[[str], None] | None, kind: str) -> None:
    """Call a counter's callback; its failure is logged, never the delivery's."""
    if callback is None:
        return
    try:
        callback(kind)
    except Exception:
        log.exception("mail %s: the result callback failed", kind)


class Mailer:
    """Renders account mail and delivers it in the background through ``transport``."""

    def __init__(
        self,
        transport: MailTransport,
        sender: str,
        templates: MailTemplates,
        *,
        attempts: int = 5,
        first_retry_seconds: float = 1.0,
        max_retry_seconds: float = 60.0,
        on_sent: Callable[[str], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        if one_line(sender) != sender or "@" not in sender:
            raise ValueError("MAIL_FROM must be one line holding an email address")
        if attempts < 1:
            raise ValueError("a mailer needs at least one attempt")
        self.transport = transport
        self.sender = sender
        self.templates = templates
        self._attempts = attempts
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._on_sent = on_sent  # called with the kind: metrics, say
        self._on_failed = on_failed
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until done
        self.sent = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Mails not yet delivered nor given up on."""
        return len(self._tasks)

    def send(self, kind: str, to: str, **values: Any) -> None:
        """Render the mail of ``kind`` to ``to`` now (raising if it cannot be), and
        deliver it in the background. Needs a running event loop."""
        mail = self.templates.render(kind, to, **values)
        task = asyncio.get_running_loop().create_task(self._deliver(mail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure: exponential, capped, jittered."""
        ceiling = min(self._max_retry, self._first_retry * 2 ** (failures - 1))
        return _jitter.uniform(ceiling / 2, ceiling)

    async def _deliver(self, mail: Mail) -> None:
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    await self.transport.deliver(mail, self.sender)
                except Exception as error:
                    reason = failure_reason(error)
                    if attempt >= self._attempts or _permanent(error):
                        self._give_up(mail, attempt, reason)
                        return
                    delay = self.retry_delay(attempt)
                    log.warning(
                        "mail %s to @%s failed (attempt %d of %d): %s; retrying in %.1fs",
                        mail.kind, mail.domain, attempt, self._attempts, reason, delay,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                else:
                    log.info("mail %s sent to @%s", mail.kind, mail.domain)
                    self.sent += 1
                    _notify(self._on_sent, mail.kind)
                    return
        except asyncio.CancelledError:
            log.error(
                "mail %s to @%s abandoned at shutdown (attempt %d of %d)",
                mail.kind, mail.domain, attempt, self._attempts,
            )  # fmt: skip
            self._count_failure(mail)
            raise

    def _give_up(self, mail: Mail, attempt: int, reason: str) -> None:
        log.error(
            "mail %s to @%s given up after %d attempt%s: %s",
            mail.kind, mail.domain, attempt, "" if attempt == 1 else "s", reason,
        )  # fmt: skip
        self._count_failure(mail)

    def _count_failure(self, mail: Mail) -> None:
        self.failed += 1
        _notify(self._on_failed, mail.kind)

    # ASYNC109: ``timeout`` bounds this wait only; the deliveries go on (``close`` cancels).
    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the deliveries in flight (retries included),
        and for those they are joined by meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Drain, then cancel whatever is still being delivered (each logged)."""
        await self.drain(timeout)
        left = set(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
