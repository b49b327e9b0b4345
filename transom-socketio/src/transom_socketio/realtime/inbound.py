"""What a client may send on a socket, checked before python-socketio sees it.

The app speaks JSON and handles only the client events it declares
(realtime/events.py: each checked by its pydantic model and rate limited per
socket; any other EVENT is dropped), so a well-behaved client sends only engine.io
control packets and the Socket.IO packets CONNECT, DISCONNECT, EVENT and ACK.
``refusal`` names what is wrong with anything else, and the transport
(realtime/transport.py) closes the socket with one INFO line:

- binary data (WebSocket binary frames, base64 ``b`` long-polling packets, the
  Socket.IO BINARY_EVENT and BINARY_ACK types) is refused, not bounded: the app
  has no use for attachments, and a refusal needs no per-socket buffer or count;
- a packet that does not decode (bad JSON, JSON nested too deep, a bad header
  such as ``451-[``), or a type a client may not send;
- an EVENT named like one of Socket.IO's own events (``disconnect`` would run the
  server's disconnect handler while the socket stays open).

A Socket.IO CONNECT that does not decode is let through: ``ClientPacket`` turns
it into a CONNECT whose ``auth`` is a ``MalformedConnect``, which the handshake
refuses with ``INVALID_TOKEN``, as a client waiting for its connection expects.

Even packets a client may send cost CPU (a decode, a ping timer, an event nobody
handles, or one a handler runs for): each session has an ``InboundBudget`` of
packets, and one that sends more is closed (SOCKETIO_INBOUND_PACKETS_PER_SECOND,
SOCKETIO_INBOUND_BURST). A declared event has a per-socket limit of its own on top,
answered in its acknowledgement rather than by closing the socket.
"""

from __future__ import annotations

import time
from typing import Any

from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet

# Event names with a meaning of their own in Socket.IO or python-socketio.
RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
        "__disconnect_final",
        "*",
    }
)
# engine.io packets a client sends: PONG, MESSAGE and CLOSE; over a WebSocket also
# the upgrade's PING probe and UPGRADE (and a NOOP, which engine.io ignores there).
POLLING_TYPES = frozenset({eio_packet.CLOSE, eio_packet.PONG, eio_packet.MESSAGE})
WEBSOCKET_TYPES = POLLING_TYPES | {eio_packet.PING, eio_packet.UPGRADE, eio_packet.NOOP}
BINARY = "binary packet"
MALFORMED = "malformed packet"


class InboundBudget:
    """A token bucket of packets for one engine.io session: ``burst`` at once, refilled
    at ``rate`` a second (a rate of 0: no limit)."""

    __slots__ = ("_stamp", "_tokens", "burst", "exhausted", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self.exhausted = False  # once spent past the limit, it stays spent

    def spend(self, packets: int) -> bool:
        """Take ``packets`` from the bucket; False (for good) when it does not hold them."""
        if not self.rate:
            return True
        if self.exhausted:
            return False
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < packets:
            self.exhausted = True
            return False
        self._tokens -= packets
        return True


def packet_count(message: str | bytes, polling: bool) -> int:
    """How many engine.io packets ``message`` holds, without decoding it: a WebSocket
    frame is one, a long-polling body one more than its record separators."""
    if not polling:
        return 1
    separator = b"\x1e" if isinstance(message, bytes) else "\x1e"
    return message.count(separator) + 1  # type: ignore[arg-type]


class MalformedConnect:
    """The ``auth`` of a CONNECT packet that did not decode; the handshake refuses it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ClientPacket(packet.Packet):
    """python-socketio's packet, except that an undecodable CONNECT becomes a refusal.

    Passed as ``serializer=``. Every other packet reaching it passed ``refusal``.
    """

    def decode(self, encoded_packet: Any) -> Any:
        try:
            return super().decode(encoded_packet)
        except (ValueError, RecursionError) as error:
            if not (isinstance(encoded_packet, str) and encoded_packet[:1] == "0"):
                raise
            self.packet_type, self.namespace = packet.CONNECT, None
            self.data = MalformedConnect(type(error).__name__)
            return 0


def refusal(message: str | bytes, polling: bool) -> str | None:
    """Why a client's engine.io ``message`` (a WebSocket frame, or a long-polling
    POST body) is refused, or None when it may go on to engine.io."""
    if isinstance(message, bytes):
        if not polling:
            return BINARY
        try:
            message = message.decode()
        except UnicodeDecodeError:
            return f"{MALFORMED} (not UTF-8)"
    try:
        packets = _packets(message, polling)
    except Exception as error:  # hostile input: any failure is a refusal
        return f"{MALFORMED} ({type(error).__name__})"
    allowed = POLLING_TYPES if polling else WEBSOCKET_TYPES
    for pkt in packets:
        if pkt.binary:
            return BINARY
        if pkt.packet_type not in allowed:
            return f"{MALFORMED} (engine.io packet type)"
        if pkt.packet_type == eio_packet.MESSAGE:
            # engine.io hands a MESSAGE on as JSON when its text parses as JSON (a
            # number, a list...): never a Socket.IO packet, which starts with a digit
            # followed by more (engine.io keeps a bare digit as text).
            if not isinstance(pkt.data, str):
                return f"{MALFORMED} (not a Socket.IO packet)"
            reason = _socketio_refusal(pkt.data)
            if reason is not None:
                return reason
    return None


def closes_session(message: str | bytes) -> bool:
    """Whether a long-polling POST body (already accepted by ``refusal``) carries CLOSE."""
    return any(pkt.packet_type == eio_packet.CLOSE for pkt in _packets(message, polling=True))


def upgrades(message: str | bytes) -> bool:
    """Whether a WebSocket message (already accepted by ``refusal``) is engine.io's
    UPGRADE, the client's last step in moving its session to this WebSocket."""
    return message == str(eio_packet.UPGRADE)


def leaves(message: str | bytes, polling: bool) -> bool:
    """Whether an accepted message carries Socket.IO's DISCONNECT: the client leaves.

    python-socketio then runs the disconnect handler but keeps the engine.io session,
    which would stay open, signed in to nothing, for as long as the client answers
    pings; socket.io-client closes it right after, and so does the transport here.
    """
    return any(
        pkt.packet_type == eio_packet.MESSAGE and pkt.data[:1] == str(packet.DISCONNECT)
        for pkt in _packets(message, polling)
    )


def _packets(message: str | bytes, polling: bool) -> list[eio_packet.Packet]:
    text = message.decode() if isinstance(message, bytes) else message
    if polling:
        return eio_payload.Payload(encoded_payload=text).packets
    return [eio_packet.Packet(encoded_packet=text)]


def _socketio_refusal(text: str) -> str | None:
    if text[:1] == str(packet.CONNECT):
        return None  # ClientPacket turns an undecodable CONNECT into a refusal
    decoded = packet.Packet()
    try:
        attachments = decoded.decode(text)
    except Exception as error:  # hostile input: any failure is a refusal
        return f"{MALFORMED} ({type(error).__name__})"
    kind = decoded.packet_type
    if attachments or kind in (packet.BINARY_EVENT, packet.BINARY_ACK):
        return BINARY
    if kind == packet.DISCONNECT:
        return None
    if kind == packet.ACK:
        return None if isinstance(decoded.data, list) else f"{MALFORMED} (ACK data)"
    if kind != packet.EVENT:
        return f"{MALFORMED} (unexpected packet type)"
    data = decoded.data
    if not (isinstance(data, list) and data and isinstance(data[0], str)):
        return f"{MALFORMED} (EVENT without a name)"
    if data[0] in RESERVED_EVENTS:
        return "reserved event name"
    return None
