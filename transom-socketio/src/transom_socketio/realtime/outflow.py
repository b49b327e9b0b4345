"""How much of what a replay handed a socket its transport has taken: flow control.

A packet for a socket that does not read waits in two places: engine.io's queue of
the session (until its writer takes it, at once on a WebSocket; until the client's
next poll on long-polling), then Tornado's write buffer of the connection (until the
kernel takes it). Neither is bounded, so a replay that sent everything at once held
a whole history per socket. Both ends are seen, with Tornado's public API, by the
handler of the session's transport (``server.socketio_route``): a WebSocket message is
*taken* once the future ``write_message`` returns has resolved (it is in the kernel),
a long-polling answer takes every packet queued (engine.io answers a poll with all of
them; its body may be compressed, so it is not counted).

A replay watches its session (``Outflow.watch``), records each packet it hands to
engine.io (``Flow.handed``) and, before the unsent bytes would pass its bound, waits
until the transport has taken them all (``Flow.drained``). Packets are counted in
the order engine.io sends them; another packet taken meanwhile (a ping, the CONNECT
answer) counts as one of the replay's, so the estimate errs by a few small packets.
Only watched sessions are counted: with no replay under way, the handler's cost is
one truthiness test per message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Flow:
    """One watched engine.io session: the sizes of the packets handed to it not yet
    taken by its transport, and the WebSocket handlers that engine.io wrote to for it."""

    __slots__ = ("_sizes", "_waiter", "unsent_bytes", "websockets")

    def __init__(self) -> None:
        self._sizes: deque[int] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.unsent_bytes = 0
        self.websockets: set[Any] = set()

    @property
    def unsent_packets(self) -> int:
        return len(self._sizes)

    def handed(self, size: int) -> None:
        """A packet of ``size`` characters (or bytes) was given to engine.io."""
        self._sizes.append(size)
        self.unsent_bytes += size

    def took(self, packets: int = 1) -> None:
        """The transport took ``packets`` packets (sent to the kernel, or in a poll)."""
        sizes = self._sizes
        for _ in range(min(packets, len(sizes))):
            self.unsent_bytes -= sizes.popleft()
        if not sizes and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def took_one(self, _written: asyncio.Future[None]) -> None:
        """``took`` as the done callback of a ``write_message`` future."""
        self.took(1)

    async def drained(self, within: float) -> bool:
        """Wait until everything handed was taken; False if that takes longer than
        ``within`` seconds."""
        if not self._sizes:
            return True
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._waiter, within)
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True


class Outflow:
    """The watched sessions of one Socket.IO server, by engine.io sid."""

    def __init__(self) -> None:
        self._flows: dict[str, Flow] = {}

    def __bool__(self) -> bool:
        return bool(self._flows)

    def watch(self, eio_sid: str) -> Flow:
        flow = self._flows[eio_sid] = Flow()
        return flow

    def forget(self, eio_sid: str) -> None:
        self._flows.pop(eio_sid, None)

    def get(self, eio_sid: str | None) -> Flow | None:
        return None if eio_sid is None else self._flows.get(eio_sid)

    def polled(self, eio_sid: str | None) -> None:
        """A long-polling answer for ``eio_sid`` was written: it carries every packet
        engine.io had queued for the session."""
        flow = self.get(eio_sid)
        if flow is not None:
            flow.took(flow.unsent_packets)
