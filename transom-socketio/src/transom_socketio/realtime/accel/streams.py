"""Lighter write-side containers for the Tornado stream of an open WebSocket.

Tornado's ``IOStream`` keeps two ``collections.deque`` for what it writes: the chunks
of its write buffer (``_StreamBuffer._buffers``) and the futures of pending writes
(``_write_futures``). CPython gives every deque a 64-slot block as it is created, so
the two cost about 1.5 KB per connection, for queues that are empty nearly all the
time and a few entries long otherwise. ``LightDeque`` does the same job in a list
(56 bytes empty) and a head index: ``accel/engine.py`` swaps it in for both once a
WebSocket is open (``lighten``), keeping whatever they held, in order.

It implements what ``tornado.iostream`` calls on them (``append``, ``popleft``,
``[0]``, ``[-1]``, ``len``, truth, iteration, ``clear``), checked against the tested
Tornado release (``accel/versions.py``).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import tornado.iostream

# Consumed entries kept at the head of the list before it is compacted: a long backlog
# (a slow reader behind a fan-out) is taken from the front in O(1) per entry.
_COMPACT_AT = 32


class LightDeque:
    """A FIFO in a list; the part of ``collections.deque`` an ``IOStream`` uses."""

    __slots__ = ("_head", "_items")

    def __init__(self, items: Any = ()) -> None:
        self._items: list[Any] = list(items)
        self._head = 0

    def append(self, item: Any) -> None:
        self._items.append(item)

    def popleft(self) -> Any:
        items, head = self._items, self._head
        if head >= len(items):
            raise IndexError("pop from an empty deque")
        item = items[head]
        head += 1
        if head == len(items):
            items.clear()  # empty again: nothing left to compact
            head = 0
        elif head >= _COMPACT_AT and head * 2 >= len(items):
            del items[:head]
            head = 0
        else:
            items[head - 1] = None  # drop the reference now, as deque.popleft does
        self._head = head
        return item

    def __getitem__(self, index: int) -> Any:
        if index >= 0:
            index += self._head
            if index >= len(self._items):
                raise IndexError("deque index out of range")
        elif -index > len(self._items) - self._head:
            raise IndexError("deque index out of range")
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items[self._head :])

    def clear(self) -> None:
        self._items.clear()
        self._head = 0


def lighten(stream: Any) -> None:
    """Swap the two write-side deques of ``stream`` (a Tornado ``IOStream``) for
    ``LightDeque``, keeping their content; anything else is left as it is."""
    if not isinstance(stream, tornado.iostream.IOStream) or stream.closed():
        return
    futures = getattr(stream, "_write_futures", None)
    if type(futures) is collections.deque:
        stream._write_futures = LightDeque(futures)  # type: ignore[assignment]
    buffer = getattr(stream, "_write_buffer", None)
    chunks = getattr(buffer, "_buffers", None)
    if type(chunks) is collections.deque:
        buffer._buffers = LightDeque(chunks)  # type: ignore[union-attr]
