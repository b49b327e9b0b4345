"""Account mail over real SMTP (aiosmtpd on 127.0.0.1): what arrives, TLS and AUTH as
SMTP_URL says, retries, and failures logged with the recipient's domain only."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from transom_socketio.mail.message import Mail
from transom_socketio.mail.sender import Mailer
from transom_socketio.mail.templates import MailTemplates
from transom_socketio.mail.transports import SmtpTransport
from transom_socketio.testing import smtp
from transom_socketio.testing.smtp import SmtpServer, link_in

smtp_server = pytest.fixture(smtp.smtp_server)

SENDER = "Example App <noreply@app.example>"
TOKEN = "tok-" + "s3cr3t" * 7
LINK = f"https://app.example/verify?token={TOKEN}"
VALUES = {
    "app_name": "Example App",
    "user": {"display_name": "Alice Liddell"},
    "link": LINK,
    "expires_minutes": 30,
}
LOGGER = "transom_socketio.mail"


def mailer_for(transport: SmtpTransport, templates: MailTemplates | None = None, **options):
    timing = {"attempts": 3, "first_retry_seconds": 0.01, "max_retry_seconds": 0.02}
    return Mailer(transport, SENDER, templates or MailTemplates(), **{**timing, **options})


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mail_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture
def mail_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger=LOGGER)
    yield caplog


@pytest.mark.gen_test
async def test_a_mail_reaches_the_server_with_its_from_to_subject_and_body(smtp_server, mail_logs):
    mailer = mailer_for(SmtpTransport.from_url(smtp_server.url))
    mailer.send("verify", "Alice@Example.com", **VALUES)
    await mailer.drain()

    [message] = await smtp_server.wait_for("alice@example.com")
    assert message["From"] == SENDER
    assert message["To"] == "Alice@Example.com"
    assert message["Subject"] == "Confirm your email address for Example App"
    assert message["Date"] and message["Message-ID"].endswith("@app.example>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert body.startswith("Hello,\n") and "Alice Liddell" not in body
    assert "for 30 minutes" in body
    assert link_in(message, "/verify?token=") == LINK
    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == "noreply@app.example"
    assert delivery.rcpt_tos == ("Alice@Example.com",)
    # The server offers no STARTTLS: the mail goes in clear, as smtp:// allows.
    assert delivery.tls is False and delivery.login is None
    assert (mailer.pending, mailer.sent, mailer.failed) == (0, 1, 0)
    assert mail_lines(mail_logs, logging.INFO) == ["mail verify sent to @example.com"]


@pytest.mark.gen_test
async def test_non_ascii_names_and_text_arrive_intact(smtp_server):
    mailer = mailer_for(SmtpTransport.from_url(smtp_server.url))
    values = {**VALUES, "app_name": "Ünïcode Äpp 李"}
    mailer.send("reset", "zoe@example.com", **values)
    await mailer.drain()

    [message] = await smtp_server.wait_for("zoe@example.com")
    assert message["Subject"] == "Reset your Ünïcode Äpp 李 password"
    assert "Ünïcode Äpp 李" in message.get_content()


@pytest.mark.gen_test
async def test_smtp_upgrades_with_starttls_when_the_server_offers_it():
    with SmtpServer(tls="starttls") as server:
        transport = SmtpTransport.from_url(server.url, tls_context=server.client_tls_context())
        mailer = mailer_for(transport)
        mailer.send("verify", "alice@example.com", **VALUES)
        await mailer.drain()
        await server.wait_for("alice@example.com")
        assert server.deliveries[0].tls is True


@pytest.mark.gen_test
async def test_starttls_with_an_untrusted_certificate_sends_nothing_in_clear(mail_logs):
    with SmtpServer(tls="starttls") as server:
        mailer = mailer_for(SmtpTransport.from_url(server.url), attempts=2)  # system CAs
        mailer.send("verify", "alice@example.com", **VALUES)
        await mailer.drain()
        assert server.messages == []
    [gave_up] = mail_lines(mail_logs, logging.ERROR)
    assert gave_up == (
        "mail verify to @example.com given up after 2 attempts: "
        "SSLCertVerificationError (CERTIFICATE_VERIFY_FAILED)"
    )


@pytest.mark.gen_test
async def test_smtps_speaks_tls_from_the_first_byte():
    with SmtpServer(tls="implicit") as server:
        assert server.url.startswith("smtps://")
        transport = SmtpTransport.from_url(server.url, tls_context=server.client_tls_context())
        mailer = mailer_for(transport)
        mailer.send("verify", "alice@example.com", **VALUES)
        await mailer.drain()
        await server.wait_for("alice@example.com")
        assert server.deliveries[0].tls is True


@pytest.mark.gen_test
async def test_auth_uses_the_percent_decoded_user_and_password_of_the_url(mail_logs):
    user, password = "mailer@app.example", "p@ss/w:rd %?#"
    with SmtpServer(username=user, password=password, tls="starttls") as server:
        trust = server.client_tls_context()
        url = f"smtp://mailer%40app.example:p%40ss%2Fw%3Ard%20%25%3F%23@127.0.0.1:{server.port}"
        mailer = mailer_for(SmtpTransport.from_url(url, tls_context=trust))
        mailer.send("verify", "alice@example.com", **VALUES)
        await mailer.drain()
        await server.wait_for("alice@example.com")
        assert server.deliveries[0].login == user
        assert server.deliveries[0].tls is True

        # Without credentials the server refuses the mail (530), with a wrong password
        # the login (535): refusals for good, given up at once, not retried.
        for refused in (server.url, f"smtp://mailer%40app.example:wrong@127.0.0.1:{server.port}"):
            mailer = mailer_for(SmtpTransport.from_url(refused, tls_context=trust))
            mailer.send("verify", "bob@example.org", **VALUES)
            await mailer.drain()
        assert server.to("bob@example.org") == []
    assert mail_lines(mail_logs, logging.WARNING) == []
    assert mail_lines(mail_logs, logging.ERROR) == [
        "mail verify to @example.org given up after 1 attempt: SMTPSenderRefused (530 5.7.0)",
        "mail verify to @example.org given up after 1 attempt: SMTPAuthenticationError (535 5.7.8)",
    ]
    assert "wrong" not in mail_logs.text and password not in mail_logs.text


@pytest.mark.gen_test
async def test_a_password_is_never_sent_to_a_server_that_offers_no_starttls(mail_logs):
    """Found by a review: smtp:// with credentials logged in over plain text when the
    server (or someone between) did not offer STARTTLS, and sent the mail's link."""
    password = "S3cret-password"
    with SmtpServer(username="mailer", password=password) as server:  # AUTH, no STARTTLS
        url = f"smtp://mailer:{password}@127.0.0.1:{server.port}"
        mailer = mailer_for(SmtpTransport.from_url(url), attempts=2)
        mailer.send("verify", "alice@example.com", **VALUES)
        await mailer.drain()
        assert server.logins == []  # no AUTH at all, let alone in clear
        assert server.messages == []
    [gave_up] = mail_lines(mail_logs, logging.ERROR)
    assert gave_up.startswith("mail verify to @example.com given up after 2 attempts: SMTP")
    assert password not in mail_logs.text and TOKEN not in mail_logs.text


@pytest.mark.gen_test
async def test_a_temporary_refusal_is_retried_and_the_mail_arrives_once(smtp_server, mail_logs):
    smtp_server.fail_next(1)
    mailer = mailer_for(SmtpTransport.from_url(smtp_server.url))
    mailer.send("reset", "alice@example.com", **VALUES)
    await mailer.drain()

    assert len(await smtp_server.wait_for("alice@example.com")) == 1
    assert len(smtp_server.messages) == 1
    [warning] = mail_lines(mail_logs, logging.WARNING)
    assert warning.startswith(
        "mail reset to @example.com failed (attempt 1 of 3): SMTPDataError (451 4.3.0); "
        "retrying in "
    )
    assert mail_lines(mail_logs, logging.INFO) == ["mail reset sent to @example.com"]
    assert (mailer.sent, mailer.failed) == (1, 0)


@pytest.mark.gen_test
async def test_a_server_that_is_down_neither_holds_the_caller_nor_leaks_the_mail(mail_logs):
    failed: list[str] = []
    transport = SmtpTransport.from_url(f"smtp://127.0.0.1:{closed_port()}", timeout=2)
    mailer = mailer_for(transport, on_failed=failed.append)

    # send() returns before any delivery is attempted: it never awaits the server.
    assert mailer.send("verify", "alice.secret-name@Example.COM", **VALUES) is None
    assert mailer.pending == 1
    await mailer.drain()

    assert (mailer.pending, mailer.sent, mailer.failed) == (0, 0, 1)
    assert failed == ["verify"]
    warnings = mail_lines(mail_logs, logging.WARNING)
    assert [w.split(": ", 1)[0] for w in warnings] == [
        "mail verify to @example.com failed (attempt 1 of 3)",
        "mail verify to @example.com failed (attempt 2 of 3)",
    ]
    assert all("SMTPConnectError (ECONNREFUSED); retrying in " in w for w in warnings)
    assert mail_lines(mail_logs, logging.ERROR) == [
        "mail verify to @example.com given up after 3 attempts: SMTPConnectError (ECONNREFUSED)"
    ]
    for record in mail_logs.records:
        assert record.exc_info is None
        line = record.getMessage()
        for secret in (TOKEN, "alice", "secret-name", "Confirm your", "Alice Liddell"):
            assert secret not in line


@pytest.mark.gen_test
async def test_close_abandons_what_is_left_after_its_timeout_and_logs_it(mail_logs):
    transport = SmtpTransport.from_url(f"smtp://127.0.0.1:{closed_port()}", timeout=2)
    mailer = mailer_for(transport, attempts=5, first_retry_seconds=60, max_retry_seconds=60)
    mailer.send("verify", "alice@example.com", **VALUES)

    await mailer.close(timeout=0.2)  # the first retry is a minute away

    assert mailer.pending == 0
    assert mailer.failed == 1
    assert mail_lines(mail_logs, logging.ERROR) == [
        "mail verify to @example.com abandoned at shutdown (attempt 1 of 5)"
    ]


@pytest.mark.gen_test
async def test_no_value_can_add_a_header_through_the_subject(smtp_server, tmp_path: Path):
    (tmp_path / "notice.txt").write_text("Subject: About {{ title }}\n\n{{ text }}\n")
    mailer = mailer_for(SmtpTransport.from_url(smtp_server.url), MailTemplates(tmp_path))
    title = "you\r\nBcc: victim@elsewhere.example\r\n\r\nforged body"
    mailer.send("notice", "alice@example.com", title=title, text="the real body")
    await mailer.drain()

    [message] = await smtp_server.wait_for("alice@example.com")
    assert message["Subject"] == "About you Bcc: victim@elsewhere.example forged body"
    assert message["Bcc"] is None
    assert smtp_server.deliveries[0].rcpt_tos == ("alice@example.com",)
    assert message.get_content() == "the real body\n"


@pytest.mark.gen_test
async def test_what_cannot_be_rendered_raises_to_the_caller_and_schedules_nothing(smtp_server):
    mailer = mailer_for(SmtpTransport.from_url(smtp_server.url))
    with pytest.raises(NameError, match="link"):
        mailer.send("verify", "alice@example.com", app_name="A", user={"display_name": "x"})
    with pytest.raises(ValueError, match="one non-empty line"):
        mailer.send("verify", "alice@example.com\r\nBcc: victim@elsewhere.example", **VALUES)
    with pytest.raises(ValueError, match="missing"):
        mailer.send("welcome", "alice@example.com", **VALUES)
    assert mailer.pending == 0


def test_a_mail_refuses_line_breaks_in_its_headers():
    with pytest.raises(ValueError):
        Mail("verify", "a@example.com\nBcc: b@example.com", "subject", "text")
    with pytest.raises(ValueError):
        Mail("verify", "a@example.com", "subject\nBcc: b@example.com", "text")
    with pytest.raises(ValueError):
        Mail("verify", "a@example.com", "", "text")
    with pytest.raises(ValueError, match="MAIL_FROM"):
        Mailer(SmtpTransport("127.0.0.1", 25), "a@example.com\nBcc: b@x", MailTemplates())
