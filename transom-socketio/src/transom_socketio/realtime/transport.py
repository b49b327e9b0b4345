"""The limits of the ``/socket.io/`` route, kept at the Tornado handler.

Everything a client sends passes through the Tornado handler before engine.io
reads it, so the limits are applied there, with Tornado's public handler API, and
hold whichever path delivers to sockets (FAST_FANOUT) and whichever release of
python-socketio/engine.io runs:

- a long-polling POST body larger than SOCKETIO_MAX_MESSAGE_BYTES is answered
  413 before it is read (by its Content-Length, or as soon as a chunked body
  passes the limit), and its engine.io session is closed. engine.io's own check
  would leave the request unanswered: it closes the session and then waits for
  the client to poll for the CLOSE packet, holding the body meanwhile;
- a WebSocket message is bounded by the same setting (Tornado closes the
  connection, code 1009);
- the query is read once (realtime/eio_query.py) for every check here and for
  engine.io, which is handed it as read: a parameter either reads, repeated or
  blank, is refused (400) before engine.io sees the request;
- every message is checked by realtime/inbound.py, after spending the session's
  inbound budget; a refused one closes its socket with one INFO line, and never
  reaches python-socketio;
- a new engine.io session is refused (429) while its address holds
  SOCKETIO_MAX_PENDING_PER_ADDRESS sessions that have not connected yet (its
  place is taken when the request is admitted), and is closed if it has not
  connected within SOCKETIO_CONNECT_TIMEOUT_SECONDS (realtime/sessions.py); a
  WebSocket upgrading a session takes such a place too, until the client's UPGRADE
  packet comes on a session still open, and is closed if it has not come in time;
- a WebSocket upgrade must say ``transport=websocket`` and a long-poll
  ``transport=polling`` (400): engine.io opened a long-polling session, outside the
  pending places, on an upgrade that said ``polling``;
- one long-polling GET may wait per session (``sessions.LongPolls``): a second is 400
  and ends the session; a session its client closes keeps its pending place while its
  GET waits (engine.io answers it only after ping interval + ping timeout);
- WebSocket PING frames spend the inbound budget (``on_ping``), and with the fast
  path so do the other frames that are not whole messages (``accel/frames.py``);
- a request naming a session that is closed gets 400 before engine.io reads it;
- engine.io's error answers (``Invalid session <sid>``...) are replaced by the
  API's JSON error shape, which never echoes the sid, and its log lines about
  them (ERROR the first time, with the sid) are dropped: ``EngineIOLog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import tornado.web
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from tornado.escape import parse_qs_bytes

from .. import jsonutil
from .. import registry as keys
from ..config import Settings
from ..ratelimit import address_key
from ..web.errors import standard_error
from . import eio_query, inbound
from .sessions import CONNECT, UPGRADE, LongPolls, PendingSessions

log = logging.getLogger(__name__)

# How engine.io ends the ERROR line it writes the first time a client makes each kind
# of mistake (a stale sid, a wrong transport, a bad origin).
_CLIENT_MISTAKE = "further occurrences of this error will be logged"


class EngineIOLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ``engineio_logger`` of the Socket.IO server: engine.io's own errors only.

    engine.io logs every packet at INFO (sid and data included), and a client's
    mistake at ERROR the first time, with its sid. The access log already records
    those requests with their status; what is left is what went wrong in engine.io.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("engineio.server"), {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR and _CLIENT_MISTAKE not in str(msg):
            super().log(level, msg, *args, **kwargs)


# Sessions being closed in the background (a reference keeps each task alive).
_closing: set[asyncio.Task[None]] = set()


async def close_session(sio: Any, sid: str, within: float) -> None:
    """Close an engine.io session by its ``sid`` (unknown ones are ignored).

    engine.io's ``disconnect`` queues a CLOSE packet and waits until the client
    takes it. A long-polling client that never polls again would keep that wait,
    and the session, forever: give up after ``within`` seconds, by which time the
    session is marked closed and engine.io's own sweep drops it.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sio.eio.disconnect(sid), within)


def guarded(base: type[tornado.web.RequestHandler]) -> type[tornado.web.RequestHandler]:
    """engine.io's Tornado handler class ``base``, with the limits above."""

    @tornado.web.stream_request_body
    class GuardedTransport(base):  # type: ignore[misc, valid-type]
        _named_sid: str | None = None  # the session the query names (prepare)
        # The packets the session opened by this request may still send (on the opener,
        # which python-socketio keeps with the session); a WebSocket keeps a reference.
        inbound_budget: inbound.InboundBudget | None = None
        _budget: inbound.InboundBudget | None = None
        _opened_sid: str | None = None  # the session a long-polling GET opened
        _refused = False
        _opening_poll = False
        _polling_sid: str | None = None  # the session whose packets this GET waits for
        _body_chunks: list[bytes] | None = None  # set by the first chunk of a body
        _body_size = 0

        @property
        def pending_key(self) -> object:
            """The key of the session this handler opened among the pending sessions:
            its sid for long-polling (the session outlives the request), else itself."""
            return self._opened_sid or self

        @property
        def app_settings(self) -> Settings:
            return self.application.settings["registry"][keys.SETTINGS]

        @property
        def socket_server(self) -> Any:
            return self.application.settings["registry"][keys.SOCKET_SERVER]

        @property
        def pending(self) -> PendingSessions:
            return self.socket_server.handshake.pending

        @property
        def long_polls(self) -> LongPolls:
            return self.socket_server.handshake.long_polls

        @property
        def max_message_size(self) -> int:
            # Tornado's bound on one WebSocket message (websocket_max_message_size).
            return self.app_settings.socketio_max_message_bytes

        @property
        def address(self) -> str:
            # The key the other per-address limits count under (an IPv6 /64 is one
            # address), of the address realtime/handshake.py's client_address reads
            # (the request's remote_ip, which web/application.py sets).
            return address_key(self.request.remote_ip or "unknown")

        @property
        def session_id(self) -> str | None:
            """The session the request names, as engine.io reads it (``prepare`` hands
            engine.io the query as parsed here); None for a request opening one."""
            return self._named_sid

        def is_websocket(self) -> bool:
            return self.request.headers.get("Upgrade", "").lower() == "websocket"

        def prepare(self) -> None:
            query = self._read_query()
            if query is None:
                return
            if self.session_id is not None and not self._from_opener(self.session_id):
                # A request that names a session (long-polling, or a WebSocket upgrading
                # it) must come from the address that opened it: the sid is the
                # session's only credential, and this keeps a leaked one useless from
                # anywhere else (nor can it end the session with a 413).
                log.info(
                    "socket.io request refused: session opened from another address (%s)",
                    self.request.remote_ip,
                )
                self._answer(403, "forbidden", "this session was opened from another address")
            elif query.jsonp:
                # JSONP long-polling: no Socket.IO 3+ client uses it, and its wrapped
                # answers would hide a new session's sid from the pending sessions.
                self._answer(400, "bad_request", "JSONP long-polling is not supported")
            elif self.request.method == "GET" and query.transport != (
                "websocket" if self.is_websocket() else "polling"
            ):
                # A WebSocket upgrade saying transport=polling had engine.io open a
                # long-polling session on it, which no place among the pending sessions
                # counted and no connect timeout ended (found by a review: thousands of
                # sessions from one address).
                self._answer(400, "bad_request", "the transport does not match the request")
            elif self.request.method == "POST":
                declared = self.request.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_message_size:
                    self._refuse_too_large()
            elif self.request.method == "GET" and (self.session_id is None or self.is_websocket()):
                self._admit()
            elif self.request.method == "GET" and self.session_id is not None:
                self._wait_alone(self.session_id)

        def _read_query(self) -> eio_query.EngineIOQuery | None:
            """Read the query once (``realtime/eio_query.py``) and make it the one
            engine.io reads; refuse it (400, and None) if a parameter is repeated or blank.
            Only the sid is kept (a WebSocket keeps its handler as long as it is open)."""
            try:
                query = eio_query.parse(self.request.query)
            except eio_query.AmbiguousQuery as error:
                log.info("socket.io request refused: %s (%s)", error, self.request.remote_ip)
                self._answer(400, "bad_request", str(error))
                return None
            if query.sid is not None:
                self._named_sid = query.sid
            canonical = query.canonical
            if canonical != self.request.query:
                # engine.io's Tornado driver builds QUERY_STRING from request.query (for a
                # WebSocket, once it is open); Tornado's own arguments follow it.
                self.request.query = canonical
                self.request.query_arguments = parse_qs_bytes(canonical, keep_blank_values=True)
                self.request.arguments = {
                    name: list(values) for name, values in self.request.query_arguments.items()
                }
            return query

        def _from_opener(self, sid: str) -> bool:
            sio = self.socket_server
            opener = sio.opened_from(sid)  # None: no such session, engine.io answers that
            return opener is None or opener == (self.request.remote_ip or "unknown")

        def _wait_alone(self, sid: str) -> None:
            """A long-polling GET of session ``sid``: the only one waiting, or refused
            (400) and the session closed, as engine.io's JavaScript server does."""
            if self.long_polls.begin(sid):
                self._polling_sid = sid
                return
            log.info("socket dropped: two long-polling requests of one session at once")
            self._close_session(sid)
            self._answer(400, "bad_request", "this session already has a request waiting")

        def _admit(self) -> None:
            """Take a place among the address's sessions still connecting, for a request
            opening a session, or a WebSocket upgrading one (until its UPGRADE: engine.io
            waits for the upgrade's probe without a bound)."""
            if self.pending.admits(self.address):
                # The place is taken now, before the session exists: requests arriving
                # together must not all pass this check before any of them counts.
                awaited = CONNECT if self.session_id is None else UPGRADE
                self.pending.opened(self, self.address, self._end_opening, awaited)
                return
            log.info(
                "socket refused: address %s has %d sessions not connected yet",
                self.address,
                self.pending.max_per_address,
            )
            retry_after = int(self.pending.connect_timeout)
            self.set_header("Retry-After", str(retry_after))
            self._answer(
                429,
                "too_many_requests",
                "too many sockets from this address are still connecting",
                retry_after=retry_after,
            )

        def data_received(self, chunk: bytes) -> None:
            if self._refused:
                return  # already answered; the rest of the body is dropped
            self._body_size += len(chunk)
            if self._body_size > self.max_message_size:
                self._refuse_too_large()
                return
            if self._body_chunks is None:
                self._body_chunks = []
            self._body_chunks.append(chunk)

        def on_connection_close(self) -> None:
            if self.is_websocket():
                super().on_connection_close()
            else:
                self._done_polling()
                # Ends the wait for a body that will not come (for a WebSocket
                # handler Tornado does not): the HTTP method never runs.
                tornado.web.RequestHandler.on_connection_close(self)

        def _done_polling(self) -> None:
            if self._polling_sid is not None:
                sid, self._polling_sid = self._polling_sid, None
                self.long_polls.end(sid)

        async def get(self, *args: Any, **kwargs: Any) -> None:
            if self._refused:
                return
            if self.session_id is None and not self.is_websocket():
                self._opening_poll = True
            await super().get(*args, **kwargs)

        async def post(self, *args: Any, **kwargs: Any) -> None:
            if self._refused:
                return
            body, self._body_chunks = b"".join(self._body_chunks or ()), None
            self.request.body = body  # what engine.io reads
            if not self._within_budget(body, polling=True):
                self._close_session()
                self._answer(429, "too_many_requests", "the socket sent too many packets")
                return
            reason = inbound.refusal(body, polling=True)
            if reason is not None:
                log.info("socket dropped: %s", reason)
                self._close_session()
                self._answer(400, "malformed_packet", "the socket sent a packet it may not send")
                return
            if self.session_id is not None and not await self._session_open(self.session_id):
                # engine.io would fail on a session closed but not yet swept (a 500).
                self._answer(400, "bad_request", "this Socket.IO session is closed")
                return
            if self.session_id is not None and inbound.closes_session(body):
                # Its place is given back once the GET it may have waiting is answered:
                # engine.io leaves that GET waiting after a client's CLOSE.
                sid = self.session_id
                if not self.long_polls.after(sid, lambda: self.pending.settled(sid)):
                    self.pending.settled(sid)
            await super().post(*args, **kwargs)
            if inbound.leaves(body, polling=True):
                self._close_session()

        async def _session_open(self, sid: str) -> bool:
            """Whether engine.io session ``sid`` exists and is not closed (engine.io's
            public ``get_session`` raises KeyError otherwise)."""
            sio = self.socket_server
            try:
                await sio.eio.get_session(sid)
            except KeyError:
                return False
            return True

        def _end_opening(self) -> None:
            """The connect timeout of a session opened on this request, or of the upgrade
            it makes: a WebSocket is closed; a long-polling GET was answered long ago
            (its place is its sid's)."""
            if self.is_websocket():
                self.close()

        def on_finish(self) -> None:
            # An opening request that opened no session (refused, or not upgraded) frees
            # its place; a WebSocket keeps it until it closes or connects.
            if self.get_status() != 101:
                self.pending.settled(self)
            self._done_polling()
            super().on_finish()

        async def on_message(self, message: str | bytes) -> None:
            if self._refused:
                return  # closing: whatever else arrives is dropped
            if not self._within_budget(message, polling=False):
                self._refused = True
                self.close()
                return
            reason = inbound.refusal(message, polling=False)
            if reason is not None:
                self._refused = True
                log.info("socket dropped: %s", reason)
                self.close()
                return
            await super().on_message(message)
            if inbound.leaves(message, polling=False):
                self.close()  # after the DISCONNECT, which engine.io reads first
            elif (
                self.session_id is not None
                and inbound.upgrades(message)
                and await self._session_open(self.session_id)
            ):
                # The upgrade is done: from here the session's own limits bound this
                # WebSocket (its connect timeout, its pings). One of a session that has
                # closed keeps its place, and is closed when its time is up.
                self.pending.settled(self)

        def on_close(self) -> None:
            self.pending.settled(self)
            super().on_close()

        def on_ping(self, data: bytes) -> None:
            """A WebSocket PING frame spends the budget as a packet does: Tornado answers
            each with a PONG before any message is read, and a flood of them cost the
            server ~15 µs each for nothing (found by a review)."""
            self.frames_within_budget(1)

        def frames_within_budget(self, frames: int) -> bool:
            """Spend the budget on WebSocket frames that are not whole messages (control
            frames, a fragmented message's pieces); False, and the socket closed, once
            it is spent. ``on_ping`` calls it on either path; the fast path's frame
            reader for each other such frame (``accel/frames.py``)."""
            if self._refused:
                return False
            if self._spend(frames):
                return True
            self._refused = True
            self.close()
            return False

        def _within_budget(self, message: str | bytes, polling: bool) -> bool:
            """Spend the session's inbound budget on ``message``; False, with one INFO
            line per session, once it is spent."""
            return self._spend(inbound.packet_count(message, polling))

        def _spend(self, packets: int) -> bool:

            budget = self._budget or self._session_budget()
            if budget is None:
                return True  # no such session: engine.io refuses the request
            already = budget.exhausted
            if budget.spend(packets):
                return True
            if not already:
                log.info(
                    "socket dropped: more than %d packets at once or %d a second "
                    "(SOCKETIO_INBOUND_BURST, SOCKETIO_INBOUND_PACKETS_PER_SECOND)",
                    budget.burst,
                    budget.rate,
                )
            return False

        def _session_budget(self) -> inbound.InboundBudget | None:
            """The budget of the session this request belongs to, kept on the request
            that opened it (this one, for a WebSocket that opened its session)."""
            sid = self.session_id
            sio = self.socket_server
            opener = self if sid is None else sio.opening_request(sid)
            if opener is None:
                return None
            if opener.inbound_budget is None:
                settings = self.app_settings
                opener.inbound_budget = inbound.InboundBudget(
                    settings.socketio_inbound_packets_per_second, settings.socketio_inbound_burst
                )
            if self.is_websocket():
                self._budget = opener.inbound_budget  # one lookup per WebSocket
            return opener.inbound_budget

        def write(self, chunk: str | bytes | dict[str, Any]) -> None:
            if self._opening_poll and self.get_status() == 200:
                self._opening_poll = False
                self._track_new_poll(chunk)
            elif self.get_status() >= 400 and not self._refused:
                # engine.io's error text may hold the sid: answer in the API's shape.
                body = standard_error(self.get_status())[1]
                self.set_header("Content-Type", "application/json; charset=UTF-8")
                chunk = jsonutil.dumps(body)
            super().write(chunk)

        def _track_new_poll(self, chunk: str | bytes | dict[str, Any]) -> None:
            # engine.io answers a new long-polling session with its OPEN packet, the
            # one place its sid is given out.
            text = chunk.decode() if isinstance(chunk, bytes) else str(chunk)
            opened = eio_payload.Payload(encoded_payload=text).packets[0]
            if opened.packet_type == eio_packet.OPEN:
                sid = self._opened_sid = opened.data["sid"]
                self.pending.settled(self)  # the session outlives the request: key it by sid
                self.pending.opened(sid, self.address, lambda: self._close_session(sid))

        def _refuse_too_large(self) -> None:
            log.info(
                "socket dropped: long-polling body over SOCKETIO_MAX_MESSAGE_BYTES (%d)",
                self.max_message_size,
            )
            self._close_session()
            self._answer(
                413,
                "payload_too_large",
                f"a Socket.IO request body must be at most {self.max_message_size} bytes",
            )

        def _close_session(self, sid: str | None = None) -> None:
            sid = sid or self.session_id
            if sid is None:
                return
            self.pending.settled(sid)
            settings = self.app_settings
            sio = self.socket_server
            within = settings.socketio_ping_interval + settings.socketio_ping_timeout
            task = asyncio.ensure_future(close_session(sio, sid, within))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

        def _answer(self, status: int, code: str, message: str, **extra: Any) -> None:
            self._refused = True
            self._body_chunks = None
            self.set_status(status)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(jsonutil.dumps({"error": {"code": code, "message": message, **extra}}))

    return GuardedTransport
