"""Lighter queues for the two queues engine.io keeps per connection (swapped in by
``accel/engine.py``: ``create_queue`` and the Tornado handler's ``receive_queue``).

engine.io gives every socket an ``asyncio.Queue`` for outgoing packets, and its
Tornado handler one more for incoming messages. An ``asyncio.Queue`` carries three
deques and an ``Event`` with a fourth (about 2.7 KB); each connection has exactly
one producer side and one consumer, so one list and one waiting future do the same
job. A list rather than a deque: an empty deque holds a 760-byte block, an empty list
56 bytes, and these queues are empty nearly all the time and short otherwise, where
``pop(0)`` costs nothing to speak of. They implement only what engine.io calls.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    """Incoming WebSocket messages of engine.io's Tornado handler (``receive_queue``).

    ``next_message`` is what engine.io's WebSocket wrapper waits on (``accel/engine.py``):
    one future rather than a chain of coroutines (the wrapper's ``wait``, the handler's
    ``get_next_message``, this queue's ``get``) held by every idle socket.
    """

    __slots__ = ("_getter", "_items", "_message")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getter: asyncio.Future[Any] | None = None
        self._message = False  # the getter is next_message's (else get's)

    def put_nowait(self, item: Any) -> None:
        getter, self._getter = self._getter, None
        if getter is None or getter.done():  # no one waiting, or the wait was cancelled
            self._items.append(item)
        elif self._message:
            _settle(getter, item)
        else:
            getter.set_result(item)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    async def get(self) -> Any:
        """The next item as it was put (None: the WebSocket closed)."""
        if self._items:
            return self._items.pop(0)
        self._getter = asyncio.get_running_loop().create_future()
        self._message = False
        return await self._getter

    def next_message(self) -> asyncio.Future[Any]:
        """The next message, as engine.io's Tornado ``WebSocket.wait`` returns it: a str
        or bytes, or ``OSError`` once the WebSocket has closed (a None was put)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items:
            _settle(future, self._items.pop(0))
        else:
            self._getter = future
            self._message = True
        return future


class PacketQueue(Inbox):
    """engine.io's per-socket outgoing queue (``AsyncServer.create_queue``).

    ``_unfinished_tasks`` keeps asyncio.Queue's name and meaning: items put and not
    yet marked done. The fast fan-out path reads it to keep packets in order.
    """

    __slots__ = ("_joiner", "_unfinished_tasks")

    def __init__(self) -> None:
        super().__init__()
        self._joiner: asyncio.Future[None] | None = None
        self._unfinished_tasks = 0

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._unfinished_tasks += 1
        getter, self._getter = self._getter, None
        if getter is not None and not getter.done():
            getter.set_result(item)  # straight to the writer waiting for it
        else:
            self._items.append(item)  # no one waiting, or its wait timed out

    def get(self) -> asyncio.Future[Any]:  # type: ignore[override]
        """The next packet, as a future rather than a coroutine.

        engine.io's writer waits with ``asyncio.wait_for(queue.get(), timeout)``; on
        Python 3.11 ``wait_for`` runs a coroutine in a Task of its own but awaits a
        future as it is, so every idle socket keeps one Task (and its coroutine) less.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items:
            future.set_result(self._items.pop(0))
        else:
            self._getter = future
        return future

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    def task_done(self) -> None:
        if self._unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished_tasks -= 1
        if self._unfinished_tasks == 0:
            _wake(self._joiner)

    async def join(self) -> None:
        while self._unfinished_tasks:
            self._joiner = asyncio.get_running_loop().create_future()
            try:
                await self._joiner
            finally:
                self._joiner = None


def _settle(future: asyncio.Future[Any], item: Any) -> None:
    if isinstance(item, str | bytes):
        future.set_result(item)
    else:
        # What engine.io's Tornado WebSocket.wait raises for anything else (None: closed).
        future.set_exception(OSError())


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
