"""What a reconnecting socket missed: the history of the message client's emits.

Every event that ``emitToUsers``/``emitToEveryone`` sends is kept, with its id, for
RECOVERY_RETENTION_SECONDS and at most RECOVERY_MAX_MESSAGES for the whole
deployment. Each delivery carries the id as an opaque *position*, a trailing argument
``{"position": ...}`` (realtime/positions.py enciphers it, so that it counts nobody's
messages); a client that reconnects with the last one it received gets every later
message addressed to it (``realtime/recovery.py`` replays them).

An emit may name a ``key`` (the shipped message entity uses ``message:<id>``): once
``edit`` retracts or replaces that key, the entries recorded with it are replayed
without it or with its new arguments. Edits are kept only for keys that have an entry
in the history, and go with it.

A replay is read in two passes that never hold the history on the event loop for
long: ``since`` counts what the socket will receive (the count the ``recovery`` event
announces), ``Replay.chunk`` then reads the entries REPLAY_CHUNK at a time.

Without ``REDIS_URL`` the history is kept in memory (``LocalHistory``): a restart
forgets it, and positions from before the restart are unknown (``complete: false``).
With it, the history is a Redis stream shared by every process (``redis_history.py``),
which is also how messages reach the other processes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Protocol

import socketio

from .positions import PositionCodec
from .rooms import NAMESPACE

REPLAY_CHUNK = 100  # entries read (and then sent) at a time by a replay
SCAN_CHUNK = 1000  # entries looked at between two turns of the event loop
MAX_KEY_LENGTH = 200


class PositionMeta(dict[str, str]):
    """The trailing ``{"position": ...}`` argument of a recorded message: a plain dict on
    the wire, a type of its own here, so a held message is told apart from an event
    whose own last argument happens to hold a "position". ``id`` is the history's own
    id of the entry (what the position enciphers)."""

    __slots__ = ("id",)
    id: Any


@dataclass(frozen=True, slots=True)
class Entry:
    """One emitted event: its id in the history, name, arguments, rooms, and key."""

    id: Any
    event: str
    args: tuple[Any, ...]
    rooms: frozenset[str]
    key: str | None = None


# LocalHistory's record of an entry: when it was kept, then Entry's fields in order.
_Record = tuple[float, int, str, tuple[Any, ...], frozenset[str], str | None]


class EntriesLost(Exception):
    """Entries a replay counted were gone when it read them (trimmed, or lost with the
    store): the socket cannot receive what it was promised."""


class Replay:
    """The answer to "what came after this position, for these rooms": whether it is
    complete, how many entries the socket gets (``count``), and those entries, read
    ``chunk()`` by ``chunk()``. This one is the empty, incomplete answer."""

    complete = False
    count = 0
    # The newest id the replay covers: later messages reach the socket live (held until
    # the replay is over); held ones up to it are in the replay or were received.
    through: Any = None

    async def chunk(self) -> list[Entry]:
        """The next entries, at most REPLAY_CHUNK, in order; [] once all were read. An
        entry retracted since ``count`` was taken is left out; a replaced one comes with
        its new arguments. Raises EntriesLost."""
        return []


INCOMPLETE = Replay()

RETRACTED = None  # an edit that retracts its key (``History.edit``)


def arguments(data: Any) -> tuple[Any, ...]:
    """An emit's ``data`` as Socket.IO arguments (a tuple is several, anything else one)."""
    return data if isinstance(data, tuple) else (data,)


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"key must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
    return key


def id_of(data: Any) -> Any:
    """The history id of a recorded message (its ``PositionMeta``); None for other events."""
    if isinstance(data, tuple) and data and isinstance(data[-1], PositionMeta):
        return data[-1].id
    return None


def edited(entry: Entry, edit: tuple[Any, ...] | None) -> Entry | None:
    """``entry`` as an edit of its key leaves it: None if retracted."""
    return None if edit is RETRACTED else replace(entry, args=edit)


class History(Protocol):
    """Records and delivers the message client's emits; answers replays."""

    async def start(self) -> None:
        """Begin delivering (idempotent)."""

    async def emit(
        self, event: str, args: tuple[Any, ...], rooms: list[str], key: str | None = None
    ) -> None:
        """Keep the event and deliver it, with its position, to ``rooms``."""

    async def edit(self, key: str, args: tuple[Any, ...] | None) -> None:
        """From now on, replay the entries recorded with ``key`` with ``args`` instead of
        theirs, or not at all (``RETRACTED``). A retraction is final: an edit after it
        changes nothing (an update racing a delete must not bring a message back)."""

    async def head(self) -> str | None:
        """The newest position (what a client with nothing received yet starts from);
        None when the history's store does not answer."""

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        """The entries after ``position`` sent to any of ``rooms``, in order, up to the
        newest that this process has delivered (``Replay.through``)."""

    def delivered_args(self, entry: Entry) -> tuple[Any, ...]:
        """The arguments as sockets receive them: the payload, then ``{"position"}``."""

    def is_after(self, entry_id: Any, than: Any) -> bool:
        """Whether the entry ``entry_id`` comes after the entry ``than``."""

    def known_through(self, sid: str, position: object) -> None:
        """The socket ``sid`` came back with ``position``: it had the entries up to it, so
        none of those is delivered to it again if this process has yet to (a reader
        behind the position), until ``forget(sid)``."""

    def forget(self, sid: str) -> None:
        """The socket ``sid`` is gone (or its handshake failed)."""

    async def recovery_allowed(self, user_id: str) -> bool:
        """Whether the deployment lets ``user_id`` recover once more this minute (its
        RECOVERIES_PER_MINUTE_PER_USER, counted where the history is kept); the process
        counts its own as well (recovery.ReplayLimits)."""

    async def close(self) -> None:
        """Release tasks and connections."""


class LocalReplay(Replay):
    """The entries a local replay found, read REPLAY_CHUNK at a time."""

    def __init__(self, history: LocalHistory, entries: list[Entry], through: int) -> None:
        self.complete = True
        self.count = len(entries)
        self.through = through
        self._history = history
        self._entries = entries
        self._read = 0

    async def chunk(self) -> list[Entry]:
        start, self._read = self._read, self._read + REPLAY_CHUNK
        found = (self._history.current(entry) for entry in self._entries[start : self._read])
        return [entry for entry in found if entry is not None]


class LocalHistory:
    """The history in this process's memory.

    Ids are sequence numbers; positions encipher them with an epoch drawn at start-up,
    so positions handed out before a restart are recognised as unknown instead of
    being confused with new ones.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        retention_seconds: int,
        max_messages: int,
        codec: PositionCodec,
    ) -> None:
        self._sio = sio
        self._retention = retention_seconds
        self._max = max_messages
        self._codec = codec
        self._epoch = secrets.randbits(48)
        self._sequence = 0
        self._trimmed_through = 0  # the highest sequence no longer kept
        # Kept entries, oldest first; their sequences follow one another. Each is kept as
        # a plain record (when, then the fields of its ``Entry``), an ``Entry`` being built
        # only for the replays that read it: recording is what every emit pays.
        self._entries: deque[_Record] = deque()
        self._keyed: dict[str, int] = {}  # key -> kept entries recorded with it
        self._edits: dict[str, tuple[Any, ...] | None] = {}  # only keys of kept entries

    async def start(self) -> None:
        return None

    async def emit(
        self, event: str, args: tuple[Any, ...], rooms: list[str], key: str | None = None
    ) -> None:
        sequence = self._sequence = self._sequence + 1
        now = time.monotonic()
        self._entries.append((now, sequence, event, args, frozenset(rooms), key))
        if key is not None:
            self._keyed[key] = self._keyed.get(key, 0) + 1
        self._trim(now)
        meta = PositionMeta(position=self._codec.encode(self._epoch, sequence))
        meta.id = sequence
        # ``delivered_args`` of its Entry. The room manager's emit, as ``sio.emit`` calls
        # it, less its log line and ``ignore_queue`` (a local history has no message queue).
        await self._sio.manager.emit(event, (*args, meta), NAMESPACE, room=rooms)

    async def edit(self, key: str, args: tuple[Any, ...] | None) -> None:
        if key not in self._keyed:  # no entry, nothing to edit: nothing kept
            return
        if key in self._edits and self._edits[key] is RETRACTED:
            return  # retracted for good
        self._edits[key] = args

    def current(self, entry: Entry) -> Entry | None:
        """``entry`` as the edits of its key leave it."""
        if entry.key is None or entry.key not in self._edits:
            return entry
        return edited(entry, self._edits[entry.key])

    async def head(self) -> str:
        return self._codec.encode(self._epoch, self._sequence)

    def delivered_args(self, entry: Entry) -> tuple[Any, ...]:
        meta = PositionMeta(position=self._codec.encode(self._epoch, entry.id))
        meta.id = entry.id
        return (*entry.args, meta)

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        self._trim()
        decoded = self._codec.decode(position)
        if decoded is None or decoded[0] != self._epoch:
            return INCOMPLETE  # forged, altered, or another process's (a restart's)
        after = decoded[1]
        if not self._trimmed_through <= after <= self._sequence:
            return INCOMPLETE
        # Appending and delivering happen with no await in between: everything kept has
        # been delivered. Entries appended while this scan yields are past ``through``.
        through = self._sequence
        later = list(self._entries)[after - self._trimmed_through :]
        wanted = set(rooms)
        found: list[Entry] = []
        for start in range(0, len(later), SCAN_CHUNK):
            for _at, entry_id, event, args, entry_rooms, key in later[start : start + SCAN_CHUNK]:
                if not entry_rooms.isdisjoint(wanted):
                    entry = Entry(entry_id, event, args, entry_rooms, key)
                    if self.current(entry) is not None:
                        found.append(entry)
            await asyncio.sleep(0)
        return LocalReplay(self, found, through)

    def is_after(self, entry_id: Any, than: Any) -> bool:
        return isinstance(entry_id, int) and isinstance(than, int) and entry_id > than

    def known_through(self, sid: str, position: object) -> None:
        """Nothing to do: this history delivers each entry as it appends it, so it has
        delivered every entry a position can name."""

    def forget(self, sid: str) -> None:
        """Nothing to forget (``known_through``)."""

    async def recovery_allowed(self, user_id: str) -> bool:
        return True  # one process: its own limit is the deployment's

    def _trim(self, now: float | None = None) -> None:
        oldest = (time.monotonic() if now is None else now) - self._retention
        entries = self._entries
        while entries and (len(entries) > self._max or entries[0][0] < oldest):
            _at, self._trimmed_through, _event, _args, _rooms, key = entries.popleft()
            if key is not None:
                self._forget_key(key)

    def _forget_key(self, key: str) -> None:
        left = self._keyed[key] - 1
        if left:
            self._keyed[key] = left
        else:
            del self._keyed[key]
            self._edits.pop(key, None)

    async def close(self) -> None:
        return None
