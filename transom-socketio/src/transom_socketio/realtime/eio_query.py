"""One reading of the query string of a ``/socket.io/`` request, for every guard and
for engine.io itself.

Two parsers used to read it: Tornado's (which keeps blank values) for the guards,
engine.io's ``parse_qs`` (which drops them) for the session. ``?sid=&sid=<victim>``
was then no session to the address binding and the victim's session to engine.io.
Now:

- ``parse`` reads the query once, as ``urllib.parse.parse_qsl`` reads it (what
  engine.io and Tornado both use, and the access log's redaction splits by): fields
  separated by ``&``, the name before the first ``=``, ``+`` and ``%XX`` decoded;
- a parameter that engine.io or the app reads (``READ``) may appear at most once,
  and, but for ``token``, only with a value: anything else raises
  ``AmbiguousQuery``, which the transport answers with 400 before engine.io sees
  the request;
- the transport hands engine.io ``canonical``, the same parameters re-encoded, so
  every decoder (engine.io's, python-socketio's environ, the handshake's) reads the
  values the guards read, whatever the version of the library.

python-engineio 4.x reads ``sid``, ``transport``, ``EIO`` and ``j`` (JSONP) from
``QUERY_STRING`` (``AsyncServer.handle_request``); the app reads ``sid`` (the
address binding, the pending sessions, the inbound budget) and ``token`` (the
handshake); clients also send ``t`` (a cache buster) and ``b64``, which are bound
the same way so that no future reader of them can see two values.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus, urlencode

# Parameters engine.io or the app reads: at most once each.
READ = frozenset({"sid", "EIO", "transport", "t", "b64", "j", "token"})
# Of those, the ones that may be blank: an empty ``token`` is no token, which the
# handshake refuses with INVALID_TOKEN as it refuses a missing one.
MAY_BE_BLANK = frozenset({"token"})


class AmbiguousQuery(ValueError):
    """The query names a parameter of ``READ`` twice, or without the value it needs.
    The message names the parameter, never its value (a sid or a token)."""


@dataclass(frozen=True, slots=True)
class EngineIOQuery:
    """The parameters of ``READ`` that the query holds, and the query re-encoded."""

    values: dict[str, str]
    canonical: str

    @property
    def sid(self) -> str | None:
        """The engine.io session the request names (None: a request opening one)."""
        return self.values.get("sid")

    @property
    def token(self) -> str | None:
        """The socket token of a ``?token=`` (None when absent or blank)."""
        return self.values.get("token") or None

    @property
    def transport(self) -> str | None:
        """The transport the request says it is (``polling`` or ``websocket``)."""
        return self.values.get("transport")

    @property
    def jsonp(self) -> bool:
        return "j" in self.values


def pieces(query: str) -> list[tuple[str, str, str]]:
    """The fields of ``query`` as sent: ``(raw name, "=" or "", raw value)``, split as
    ``parse_qsl`` splits them (empty fields are skipped). logs.py redacts by them."""
    return [field.partition("=") for field in query.split("&") if field]


def parse(query: str) -> EngineIOQuery:
    """Read ``query`` (the part after ``?``); raise ``AmbiguousQuery`` if it is ambiguous."""
    pairs = [(unquote_plus(name), unquote_plus(value)) for name, _, value in pieces(query)]
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in READ:
            continue
        if name in values:
            raise AmbiguousQuery(f"query parameter {name!r} is repeated")
        if not value and name not in MAY_BE_BLANK:
            raise AmbiguousQuery(f"query parameter {name!r} has no value")
        values[name] = value
    return EngineIOQuery(values, urlencode(pairs))
