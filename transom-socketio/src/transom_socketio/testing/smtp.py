"""A real SMTP server for tests of account mail: aiosmtpd, over TCP on 127.0.0.1.

``SmtpServer`` listens on a free port (``url``: ``smtp://127.0.0.1:<port>``) in a thread
of its own and records each message it accepts, parsed (``messages``, ``to(address)``,
``wait_for``), with its envelope (``deliveries``: the login used, whether TLS was on).
It can require AUTH (``username``/``password``; a ``MAIL`` before ``AUTH`` is refused
with 530), offer STARTTLS or speak TLS from the start (``tls="starttls"`` or
``"implicit"``, with a certificate made for the run: give ``client_tls_context()`` to
the transport), and answer the next deliveries 451 (``fail_next``) to test retries.

``smtp_server`` is a fixture body: ``pytest.fixture(smtp_server)`` registers it.
``link_in(message, "/verify?token=")`` finds the link a test follows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Delivery", "SmtpServer", "link_in", "smtp_server"]

HOST = "127.0.0.1"
_URL = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Delivery:
    """One accepted message and its envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the user name it authenticated with, if any
    tls: bool  # whether the connection was encrypted (STARTTLS or implicit)


def link_in(message: EmailMessage, path: str) -> str:
    """The first URL in the message's text holding ``path`` (``"/verify?token="``)."""
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    for url in _URL.findall(text):
        if path in url:
            return str(url)
    raise AssertionError(f"no link with {path!r} in the mail {message['Subject']!r}")


class SmtpServer:
    """An SMTP server on 127.0.0.1 recording what it accepts. ``start``/``stop``, or
    ``with SmtpServer() as server:``."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: Literal["starttls", "implicit"] | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.tls = tls
        self.deliveries: list[Delivery] = []
        # One entry per AUTH the server got, right or wrong: whether it came over TLS.
        self.logins: list[bool] = []
        self._lock = threading.Lock()
        self._failures_left = 0
        self._ca_pem = b""
        server_context = self._make_certificates() if tls else None
        smtp_options: dict[str, Any] = {"server_hostname": "transom-test-smtp"}
        if tls == "starttls":
            smtp_options.update(tls_context=server_context, require_starttls=False)
        if username is not None:
            # Offered without TLS (the tests speak plain SMTP); a MAIL before AUTH is
            # refused by the handler: aiosmtpd's own auth_required warns without TLS.
            smtp_options.update(auth_require_tls=False, authenticator=self._authenticate)
        self._controller = _Controller(
            _Recorder(self),
            hostname=HOST,
            port=0,
            ssl_context=server_context if tls == "implicit" else None,
            **smtp_options,
        )
        self._started = False

    # -- life cycle

    def start(self) -> SmtpServer:
        self._controller.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:<port>`` (``smtps://`` with ``tls="implicit"``), no user."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{HOST}:{self.port}"

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context trusting this server's certificate (and only it)."""
        if not self._ca_pem:
            raise RuntimeError("this server speaks no TLS")
        return ssl.create_default_context(cadata=self._ca_pem.decode("ascii"))

    # -- what it received

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [delivery.message for delivery in self.deliveries]

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose envelope names ``address`` (in any case) as a recipient."""
        wanted = address.lower()
        with self._lock:
            return [
                delivery.message
                for delivery in self.deliveries
                if wanted in (rcpt.lower() for rcpt in delivery.rcpt_tos)
            ]

    async def wait_for(
        self, address: str, count: int = 1, within: float = 10.0
    ) -> list[EmailMessage]:
        """The messages to ``address`` once there are at least ``count``; AssertionError
        if they have not arrived ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(received := self.to(address)) < count:
            if loop.time() >= deadline:
                raise AssertionError(
                    f"{len(received)} of {count} messages to {address} within {within}s"
                )
            await asyncio.sleep(0.01)
        return received

    def fail_next(self, count: int = 1) -> None:
        """Answer the next ``count`` messages ``451 4.3.0`` (a temporary failure)."""
        with self._lock:
            self._failures_left = count

    # -- the server's side (in its own thread)

    def _take_failure(self) -> bool:
        with self._lock:
            if self._failures_left <= 0:
                return False
            self._failures_left -= 1
            return True

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        with self._lock:
            self.logins.append(_encrypted(server, session))
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode("utf-8") == self.username
            and data.password.decode("utf-8") == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _make_certificates(self) -> ssl.SSLContext:
        """A certificate authority for this run and a certificate for 127.0.0.1 it signed."""
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "transom test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:  # load_cert_chain reads files
            cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
            cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(cert_file, key_file)
        return context


def _encrypted(server: SMTP, session: Session) -> bool:
    """Whether the session's connection is encrypted (STARTTLS or implicit TLS)."""
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class _Recorder:
    """aiosmtpd's handler: refuses MAIL before AUTH when a login is required, answers
    451 while failures are due, else records the message."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._server.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._server._take_failure():
            return "451 4.3.0 Try again later"
        # Lines as Python writes them (SMTP's CRLF made LF), so get_content() reads back
        # what the app rendered.
        raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        tls = _encrypted(server, session)
        auth = session.auth_data
        self._server._record(
            Delivery(
                message=message,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                login=auth.login.decode("utf-8") if isinstance(auth, LoginPassword) else None,
                tls=tls,
            )
        )
        return "250 2.0.0 OK"


class _Controller(Controller):
    """aiosmtpd's threaded controller on a port the system picks: ``port=0`` binds one,
    then ``port`` is the real one (before the controller's own first connection)."""

    def _create_server(self) -> Any:
        return self._listen()

    async def _listen(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


def smtp_server() -> Iterator[SmtpServer]:
    """Fixture body: a started plain ``SmtpServer``, stopped after the test."""
    with SmtpServer() as server:
        yield server
