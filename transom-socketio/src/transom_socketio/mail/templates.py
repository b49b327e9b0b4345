"""Mail templates: plain-text files the app can override, one per kind of mail.

``<kind>.txt`` is looked for in the app's directory first, then among the library's
defaults (``verify``, ``reset``, ``password_changed``, next to this module). A file is::

    Subject: Confirm your email address for {{ app_name }}

    Hello {{ user["display_name"] }},
    ...{{ link }}...

a ``Subject:`` line, one blank line, then the body, both Tornado templates rendered
with the keyword values given to ``render`` (the defaults use ``app_name``, ``user``
and, but for ``password_changed``, ``link`` and ``expires_minutes``). Nothing is
HTML-escaped: the mail is ``text/plain``. The rendered subject is made one line, so
no value can add a header; it must not come out empty.

``check`` reads and compiles every template the app sends, at start-up, so a missing or
malformed file stops the server with one line naming it rather than failing a sign-up.
A file is compiled again when it changes (its modification time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.template import Template

from .message import Mail, one_line

__all__ = ["DEFAULT_KINDS", "LIBRARY_TEMPLATES", "MailTemplates"]

LIBRARY_TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_KINDS = ("verify", "reset", "password_changed")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # a file name, never a path
_SUBJECT = re.compile(r"^subject:(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Compiled:
    version: tuple[Path, int]  # the file and its modification time (ns)
    subject: Template
    body: Template


class MailTemplates:
    """The templates of one app: its ``directory`` (if any) over the library's."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directories = [d for d in (directory, LIBRARY_TEMPLATES) if d is not None]
        self._compiled: dict[str, _Compiled] = {}

    def path(self, kind: str) -> Path:
        """The file ``kind`` is rendered from; ValueError (one line) if there is none."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"mail template kind {kind!r} is not a lower-case name")
        for directory in self._directories:
            candidate = directory / f"{kind}.txt"
            if candidate.is_file():
                return candidate
        searched = ", ".join(str(d) for d in self._directories)
        raise ValueError(f"mail template {kind}.txt is missing (looked in {searched})")

    def check(self, *kinds: str) -> None:
        """Load every template of ``kinds`` (the library's kinds if none are named);
        raise ValueError, in one line naming the file, for the first that is missing or
        malformed."""
        for kind in kinds or DEFAULT_KINDS:
            self._load(kind)

    def render(self, kind: str, to: str, **values: Any) -> Mail:
        """The mail of ``kind`` to ``to``. A missing value, say, raises to the caller."""
        compiled = self._load(kind)
        subject = one_line(compiled.subject.generate(**values).decode("utf-8"))
        if not subject:
            raise ValueError(f"mail template {kind}.txt rendered an empty subject")
        text = compiled.body.generate(**values).decode("utf-8")
        return Mail(kind=kind, to=to, subject=subject, text=text)

    def _load(self, kind: str) -> _Compiled:
        path = self.path(kind)
        try:
            version = (path, path.stat().st_mtime_ns)
            cached = self._compiled.get(kind)
            if cached is not None and cached.version == version:
                return cached
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(
                f"mail template {path} cannot be read: {type(error).__name__}"
            ) from None
        compiled = _compile(path, version, text.replace("\r\n", "\n"))
        self._compiled[kind] = compiled
        return compiled


def _compile(path: Path, version: tuple[Path, int], text: str) -> _Compiled:
    first, newline, rest = text.partition("\n")
    header = _SUBJECT.fullmatch(first)
    if header is None or not header.group(1).strip():
        raise ValueError(f"mail template {path}: the first line must be 'Subject: ...'")
    blank, newline, body = rest.partition("\n")
    if blank.strip() or not newline:
        raise ValueError(f"mail template {path}: a blank line must follow the subject")
    try:
        subject = Template(header.group(1).strip(), name=f"{path}:subject", autoescape=None)
        body_template = Template(body, name=str(path), autoescape=None, whitespace="all")
    except Exception as error:  # tornado.template.ParseError, or SyntaxError in an expression
        raise ValueError(f"mail template {path}: {one_line(str(error))}") from None
    return _Compiled(version, subject, body_template)
