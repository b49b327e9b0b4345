"""One timer for every socket's next engine.io PING, instead of a task per socket.

engine.io schedules a socket's next PING when the client answers the last one
(``AsyncSocket.schedule_ping``) by starting a background task that sleeps for the
ping interval and then sends it (``_send_ping``). An idle socket thus always holds a
sleeping task: the Task, two coroutines, the sleep's future and timer handle, its
context and its entry in asyncio's task set, about 1.3 KB per socket.

``Pinger`` does what ``_send_ping`` does, for all of them: the sockets wait in one
FIFO (every one waits the same interval, so the order they are scheduled in is the
order they are due in), one event-loop timer is armed for the oldest, and when it
fires every socket that is due (within ``SLACK``) is sent its PING, as
``_send_ping`` sends it: the send time recorded in ``last_ping`` first, nothing for
a socket closing or closed. ``accel/engine.py`` routes ``_send_ping`` here from
engine.io's ``start_background_task``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from engineio import packet as eio_packet

log = logging.getLogger(__name__)

# Sockets due this close to the timer are pinged with it (at most this early), rather
# than in a timer each a few milliseconds apart.
SLACK = 0.05


class Pinger:
    """The sockets waiting for their next PING, oldest first."""

    def __init__(self, server: Any) -> None:
        self._server = server  # its ping_interval, read as each socket is scheduled
        self._waiting: deque[tuple[float, Any]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def schedule(self, socket: Any) -> None:
        """Send ``socket`` (an engine.io ``AsyncSocket``) a PING one ping interval from now."""
        loop = asyncio.get_running_loop()
        self._waiting.append((loop.time() + self._server.ping_interval, socket))
        if self._timer is None:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._waiting:
            self._timer = None
            return
        self._timer = loop.call_at(self._waiting[0][0], self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        due_by = loop.time() + SLACK
        due: list[Any] = []
        waiting = self._waiting
        while waiting and waiting[0][0] <= due_by:
            due.append(waiting.popleft()[1])
        self._arm(loop)
        if due:
            task = asyncio.ensure_future(self._ping(due))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _ping(sockets: list[Any]) -> None:
        for socket in sockets:
            # What engine.io's AsyncSocket._send_ping does once its sleep is over.
            if socket.closing or socket.closed:
                continue
            socket.last_ping = time.time()
            try:
                await socket.send(eio_packet.Packet(eio_packet.PING))
            except Exception:  # one socket's failure must not cost the others their ping
                log.exception("could not send an engine.io PING")

    def close(self) -> None:
        """Forget every waiting socket (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()
