"""What a reconnecting socket missed: the history of the message client's emits.

Every event that ``emitToUsers``/``emitToEveryone`` sends is kept, with its
*position* (an opaque, ordered string), for RECOVERY_RETENTION_SECONDS and at most
RECOVERY_MAX_MESSAGES for the whole deployment. Each delivery carries its position
as a trailing argument ``{"position": ...}``; a client that reconnects with the
last one it received gets every later message addressed to it
(``realtime/recovery.py`` replays them).
{%- if cookiecutter.message_queue == "redis" %}

The history lives in one Redis stream, shared by every process
(``realtime/redis_history.py``), which is also how messages reach the other
processes: positions are the stream's ids, in the one order every process
delivers them in.
{%- else %}

With one process (message_queue=none) the history is kept in memory
(``LocalHistory``): a restart forgets it, and positions from before the restart
are unknown (``complete: false``).
{%- endif %}
"""

from __future__ import annotations
{% if cookiecutter.message_queue != "redis" %}
import re
import secrets
import time
from collections import deque
{%- endif %}
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol
{%- if cookiecutter.message_queue != "redis" %}

import socketio

from .rooms import NAMESPACE
{%- endif %}


class PositionMeta(dict[str, str]):
    """The trailing ``{"position": ...}`` argument of a recorded message: a plain dict on
    the wire, a type of its own here, so a held message is told apart from an event
    whose own last argument happens to hold a "position"."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One emitted event: its position, name, arguments and the rooms it went to."""

    position: str
    event: str
    args: tuple[Any, ...]
    rooms: frozenset[str]

    def delivered_args(self) -> tuple[Any, ...]:
        """The arguments as sockets receive them: the payload, then ``{"position"}``."""
        return (*self.args, PositionMeta(position=self.position))


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to "what came after this position, for these rooms"."""

    complete: bool  # False: the position is unknown, malformed or older than the history
    entries: list[Entry]
    # The newest position the replay covers: later messages reach the socket live (held
    # until the replay is over); held ones up to it are in the replay or were received.
    through: str | None = None


INCOMPLETE = Replay(complete=False, entries=[])


def arguments(data: Any) -> tuple[Any, ...]:
    """An emit's ``data`` as Socket.IO arguments (a tuple is several, anything else one)."""
    return data if isinstance(data, tuple) else (data,)


def position_of(data: Any) -> str | None:
    """The position of a recorded message (its ``PositionMeta``); None for other events."""
    if isinstance(data, tuple) and data and isinstance(data[-1], PositionMeta):
        return data[-1]["position"]
    return None


class History(Protocol):
    """Records and delivers the message client's emits; answers replays."""

    async def start(self) -> None:
        """Begin delivering (idempotent)."""

    async def emit(self, event: str, args: tuple[Any, ...], rooms: list[str]) -> None:
        """Keep the event and deliver it, with its position, to ``rooms``."""

    async def head(self) -> str | None:
        """The newest position (what a client with nothing received yet starts from);
        None when the history's store does not answer."""

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        """The entries after ``position`` sent to any of ``rooms``, in order, up to the
        newest that this process has delivered (``Replay.through``)."""

    def is_after(self, position: str, than: str) -> bool:
        """Whether ``position`` comes after ``than`` (False if either is not one of ours)."""

    async def close(self) -> None:
        """Release tasks and connections."""
{%- if cookiecutter.message_queue != "redis" %}


class LocalHistory:
    """The history in this process's memory: positions ``<epoch>-<sequence>``.

    The epoch is drawn at start-up, so positions handed out before a restart are
    recognised as unknown instead of being confused with new ones.
    """

    _POSITION = re.compile(r"([0-9a-f]{16})-([0-9]{1,18})")

    def __init__(
        self, sio: socketio.AsyncServer, retention_seconds: int, max_messages: int
    ) -> None:
        self._sio = sio
        self._retention = retention_seconds
        self._max = max_messages
        self._epoch = secrets.token_hex(8)
        self._sequence = 0
        self._trimmed_through = 0  # the highest sequence no longer kept
        self._entries: deque[tuple[int, float, Entry]] = deque()

    async def start(self) -> None:
        return None

    async def emit(self, event: str, args: tuple[Any, ...], rooms: list[str]) -> None:
        self._sequence += 1
        entry = Entry(f"{self._epoch}-{self._sequence}", event, args, frozenset(rooms))
        self._entries.append((self._sequence, time.monotonic(), entry))
        self._trim()
        await self._sio.emit(event, entry.delivered_args(), to=rooms, namespace=NAMESPACE)

    async def head(self) -> str:
        return f"{self._epoch}-{self._sequence}"

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        self._trim()
        after = self._sequence_of(position) if isinstance(position, str) else None
        if after is None or not self._trimmed_through <= after <= self._sequence:
            return INCOMPLETE
        wanted = set(rooms)
        entries = [
            entry
            for sequence, _at, entry in self._entries
            if sequence > after and not entry.rooms.isdisjoint(wanted)
        ]
        # Appending and delivering happen with no await in between: everything kept
        # has been delivered.
        return Replay(complete=True, entries=entries, through=await self.head())

    def is_after(self, position: str, than: str) -> bool:
        first, second = self._sequence_of(position), self._sequence_of(than)
        return first is not None and second is not None and first > second

    def _sequence_of(self, position: str) -> int | None:
        match = self._POSITION.fullmatch(position)
        if match is None or match[1] != self._epoch or match[2] != str(int(match[2])):
            return None  # another process's, or not written the way this one writes them
        return int(match[2])

    def _trim(self) -> None:
        oldest = time.monotonic() - self._retention
        entries = self._entries
        while entries and (len(entries) > self._max or entries[0][1] < oldest):
            self._trimmed_through = entries.popleft()[0]

    async def close(self) -> None:
        return None
{%- endif %}
