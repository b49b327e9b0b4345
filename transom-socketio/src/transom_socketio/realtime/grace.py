"""A grace period per key: what happens when something leaves, unless it comes back.

``Grace.start(key, value)`` runs ``expire(key, value)`` after the grace period unless
``cancel(key)`` comes first. Presence uses it so that a user whose last socket goes is
announced offline only if no socket of theirs came back meanwhile (a page reload, a
network blip): the key is the user's id. A key has at most one grace running;
starting it again restarts it. Cost: one event-loop timer per key in grace, nothing
per key otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class Grace(Generic[Key, Value]):
    def __init__(self, seconds: float, expire: Callable[[Key, Value], Awaitable[None]]) -> None:
        self._seconds = seconds
        self._expire = expire
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()  # strong references until done
        self._closed = False

    def start(self, key: Key, value: Value, seconds: float | None = None) -> None:
        """Run ``expire(key, value)`` in ``seconds`` (the grace period by default); once
        closed, nothing."""
        self.cancel(key)
        if self._closed:
            return
        delay = self._seconds if seconds is None else seconds
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._due, key, value)

    def cancel(self, key: Key) -> bool:
        """``key`` came back: its grace ends without ``expire``. True if one was running."""
        timer = self._timers.pop(key, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._timers

    def __len__(self) -> int:
        return len(self._timers)

    def _due(self, key: Key, value: Value) -> None:
        del self._timers[key]
        task = asyncio.ensure_future(self._expire(key, value))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a grace period's end failed", exc_info=task.exception())

    async def close(self) -> None:
        """End every grace without ``expire``, and wait for those already expiring; start
        no more."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
