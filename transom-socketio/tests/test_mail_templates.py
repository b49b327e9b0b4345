"""Mail templates (the app's over the library's, checked at start-up) and SMTP_URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transom_socketio.mail.templates import DEFAULT_KINDS, MailTemplates
from transom_socketio.mail.transports import SmtpTransport

VALUES = {
    "app_name": "Example App",
    "user": {"display_name": "Alice"},
    "link": "https://app.example/reset?token=abc",
    "expires_minutes": 15,
}


def test_the_library_defaults_render_with_the_documented_values():
    templates = MailTemplates()
    templates.check()  # every default kind
    for kind in DEFAULT_KINDS:
        mail = templates.render(kind, "alice@example.com", **VALUES)
        assert (mail.kind, mail.to) == (kind, "alice@example.com")
        assert "Example App" in mail.subject and "\n" not in mail.subject
        # No greeting by name: whoever signs up writes it, with any address.
        assert mail.text.startswith("Hello,\n") and "Alice" not in mail.text
    reset = templates.render("reset", "alice@example.com", **VALUES)
    assert "https://app.example/reset?token=abc" in reset.text
    assert "for 15 minutes" in reset.text


def test_a_template_of_the_app_overrides_the_library_default(tmp_path: Path):
    (tmp_path / "verify.txt").write_text(
        "Subject: Welcome to {{ app_name }}, {{ user['display_name'] }}\n\n"
        "Click {{ link }} <b>now</b> & {{ expires_minutes }}.\n"
    )
    templates = MailTemplates(tmp_path)
    templates.check("verify", "reset")
    mail = templates.render("verify", "alice@example.com", **VALUES)
    assert mail.subject == "Welcome to Example App, Alice"
    assert (
        mail.text == "Click https://app.example/reset?token=abc <b>now</b> & 15.\n"
    )  # no escaping
    # Kinds the app does not override still come from the library.
    assert templates.path("reset").parent.name == "templates"
    assert templates.render("reset", "alice@example.com", **VALUES).subject == (
        "Reset your Example App password"
    )


def test_an_edited_template_is_read_again(tmp_path: Path):
    template = tmp_path / "verify.txt"
    template.write_text("Subject: One\n\nfirst\n")
    templates = MailTemplates(tmp_path)
    assert templates.render("verify", "a@example.com").text == "first\n"
    template.write_text("Subject: Two\n\nsecond\n")
    stat = template.stat()
    os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert templates.render("verify", "a@example.com").subject == "Two"


def test_check_names_a_missing_template_in_one_line(tmp_path: Path):
    with pytest.raises(ValueError) as missing:
        MailTemplates(tmp_path).check("verify", "welcome")
    message = str(missing.value)
    assert "\n" not in message
    assert message.startswith("mail template welcome.txt is missing (looked in ")
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("Hello {{ link }}\n", "the first line must be 'Subject: ...'"),
        ("Subject:   \n\nbody\n", "the first line must be 'Subject: ...'"),
        ("Subject: Hi\nbody right away\n", "a blank line must follow the subject"),
        ("Subject: Hi", "a blank line must follow the subject"),
        ("Subject: Hi\n\nHello {{ link \n", "Missing end expression }}"),
        ("Subject: Hi {% if x %}\n\nbody\n", "Missing {% end %} block"),
        (b"Subject: Hi\n\n\xff\xfe\n", "cannot be read: UnicodeDecodeError"),
    ],
)
def test_check_names_a_malformed_template_in_one_line(tmp_path: Path, content, says):
    path = tmp_path / "reset.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError) as malformed:
        MailTemplates(tmp_path).check("verify", "reset")
    message = str(malformed.value)
    assert "\n" not in message
    assert str(path) in message
    assert says in message


def test_a_subject_rendered_empty_is_refused(tmp_path: Path):
    (tmp_path / "verify.txt").write_text("Subject: {{ title }}\n\nbody\n")
    with pytest.raises(ValueError, match="empty subject"):
        MailTemplates(tmp_path).render("verify", "a@example.com", title="\r\n")


def test_kinds_are_names_never_paths(tmp_path: Path):
    (tmp_path / "secret.txt").write_text("Subject: x\n\nsecret\n")
    templates = MailTemplates(tmp_path / "app")
    for kind in ("../secret", "/etc/passwd", "Verify", ""):
        with pytest.raises(ValueError, match="not a lower-case name"):
            templates.render(kind, "a@example.com")


def test_smtp_url_gives_host_port_tls_and_the_decoded_credentials():
    plain = SmtpTransport.from_url("smtp://mail.example.com")
    assert (plain.hostname, plain.port, plain.implicit_tls, plain.username) == (
        "mail.example.com", 25, False, None,
    )  # fmt: skip
    implicit = SmtpTransport.from_url("SMTPS://u%40x.example:p%2F%40ss@Mail.Example.com")
    assert (implicit.hostname, implicit.port, implicit.implicit_tls) == (
        "mail.example.com", 465, True,
    )  # fmt: skip
    assert implicit.username == "u@x.example"
    assert implicit._password == "p/@ss"
    assert "p/@ss" not in repr(implicit) and "p%2F" not in repr(implicit)
    assert repr(implicit) == "SmtpTransport(smtps://u@x.example@mail.example.com:465)"
    submission = SmtpTransport.from_url("smtp://apikey:@[::1]:587/", timeout=3.5)
    assert (submission.hostname, submission.port, submission.timeout) == ("::1", 587, 3.5)
    assert (submission.username, submission._password) == ("apikey", "")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "mail.example.com:25",
        "http://user:hunter2@mail.example.com",
        "smtp://user:hunter2@",
        "smtp://user:hunter2@mail.example.com:notaport",
        "smtp://user:hunter2@mail.example.com:99999",
        "smtp://user:hunter2@mail.example.com:0",
        "smtp://user:hun/ter2@mail.example.com:25",  # an unencoded "/" in the password
        "smtp://user:hun#ter2@mail.example.com:25",
        "smtp://user:hun?ter2@mail.example.com:25",
        "smtp://user:hunter2@mail.example.com:25/path",
        "smtp://user:hunter2@[::1:25",
    ],
)
def test_a_bad_smtp_url_is_refused_in_one_line_that_never_echoes_it(url: str):
    with pytest.raises(ValueError) as refused:
        SmtpTransport.from_url(url)
    message = str(refused.value)
    assert message.startswith("SMTP_URL must look like smtp://user:password@host:port")
    assert "\n" not in message
    for piece in ("hunter2", "hun", "ter2", "notaport", "99999", "mail.example.com", "/path"):
        assert piece not in message
