"""The fast path: every use of python-socketio, python-engineio and Tornado internals.

Why it exists: python-socketio delivers an emit to N sockets with N tasks and N
queue round trips (~185 µs of CPU per delivery, Node's socket.io ~17), gives every
socket two ``asyncio.Queue`` (~2.7 KB each), and scans every room on each
disconnect. The modules here replace those parts (``fanout.py``, ``queues.py``,
``indexed_rooms.py``, ``engine.py``), and replays a recovering socket's missed
messages a chunk per write (``replay.py``). For the memory of an idle socket
(engine.io serves a WebSocket with three tasks, and a sleeping task per socket for its
next PING): ``websocket.py`` serves the session in one task, ``pinger.py`` keeps one
timer for every socket's PING, ``streams.py`` gives Tornado's write side lighter
queues, ``environ.py`` builds the request environ with shared key strings,
``frames.py`` reads an open WebSocket's frames from callbacks rather than from the
handler's task, and ``upgraded.py`` lets its request's spent HTTP state go (all wired
in ``engine.py``). With them, fan-out at 1,000 sockets reached
1.8x Node's deliveries per second at a quarter of its CPU per delivery (the
template's benchmarks/README.md, 2026-12-01).

The fence: nothing outside this package touches a private attribute of those
libraries, and nothing outside it imports from it but through ``load``. One switch
governs the whole package, FAST_FANOUT (true by default); ``load`` also refuses
library versions other than those of ``versions.TESTED``. Off, or refused, the app
runs on stock python-socketio classes (with ``realtime/rooms.py``'s public-API
additions) and passes the same tests.
"""

from __future__ import annotations

import logging
from typing import Any

from . import versions

log = logging.getLogger(__name__)


class Accel:
    """Builds the fast path's classes on top of the stock ones they replace."""

    def __init__(self) -> None:
        from . import engine, fanout  # the internals: imported only when they are used

        self._engine = engine
        self._fanout = fanout

    def manager_class(self, stock: type) -> type:
        """``stock`` (a ``rooms.RoomManager``) with the fast fan-out and the room index."""
        return type(stock.__name__, (self._fanout.FanoutManager, stock), {})

    def server_class(self, stock: type) -> type:
        """``stock`` (a ``socketio.AsyncServer``) on the lighter engine.io server."""
        return type(stock.__name__, (self._engine.ServerMixin, stock), {})

    def handler_class(self, stock: type) -> type:
        """``stock`` (engine.io's Tornado handler) with the lighter incoming queue."""
        return type(stock.__name__, (self._engine.HandlerMixin, stock), {})

    @staticmethod
    def replay_writer(sio: Any) -> Any:
        """What a replay writes missed messages with (``accel/replay.py``)."""
        from .replay import ReplayWriter

        return ReplayWriter(sio)

    @staticmethod
    def bind(sio: Any) -> None:
        """Connect the server built from ``server_class`` to its fan-out manager."""
        sio.bind_fanout()


def load(fast_fanout: bool) -> Accel | None:
    """The fast path, or None for stock python-socketio: FAST_FANOUT=false, or a library
    version it was not tested with (one WARNING names it)."""
    if not fast_fanout:
        return None
    untested = versions.untested()
    if untested:
        found = ", ".join(f"{name} {version}" for name, version in sorted(untested.items()))
        tested = ", ".join(f"{name} {version}" for name, version in versions.TESTED.items())
        log.warning(
            "FAST_FANOUT is on but the fast path was tested with %s, not %s: "
            "running stock python-socketio",
            tested,
            found,
        )
        return None
    return Accel()
