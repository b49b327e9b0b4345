"""Lighter queues for the two queues engine.io keeps per connection.

engine.io gives every socket an ``asyncio.Queue`` for outgoing packets, and its
Tornado handler one more for incoming messages. An ``asyncio.Queue`` carries three
deques and an ``Event`` with a fourth (about 2.7 KB); each connection has exactly
one producer side and one consumer, so one deque and one waiting future do the same
job in about a quarter of the memory. They implement only what engine.io calls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Inbox:
    """Incoming WebSocket messages of engine.io's Tornado handler (``receive_queue``)."""

    __slots__ = ("_getter", "_items")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._getter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        _wake(self._getter)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    async def get(self) -> Any:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self._items.popleft()


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
        super().put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

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


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
