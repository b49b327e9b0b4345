"""Concurrent calls of one kind answered by one database round trip.

Under load, many requests ask the database the same kind of thing within the same
pass of the event loop: is this JWT revoked? store this socket token. A ``Batcher``
collects the calls made during one pass and answers them all with one query
(``find`` with ``$in``, ``insert_many``), so 16 concurrent requests cost one round
trip instead of 16. A lone call goes out on the next pass: nothing waits for a batch
to fill, so a quiet server answers as fast as without it. Calls made while a batch is
waiting for the database queue up and go out together when it returns, so the busier
the server, the bigger the batches. Batchers of different kinds may share a ``Lane``:
then a batch of one kind also waits while one of another kind is out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Answers for a batch, in the order of its items: a result, or an exception that only
# that item's caller raises. If the function raises, every caller in the batch does.
BatchFunction = Callable[[list[Item]], Awaitable[list[Result | BaseException]]]


class Lane:
    """The batches in flight of batchers that share one resource: at most
    ``max_in_flight`` of any of them at once. Calls of one kind then queue while a batch
    of another kind is out, and go out together when it returns: group commit across
    the kinds, so a database that answers two kinds of query in turn (a socket token's
    insert, a handshake's delete) gets fewer, larger batches, with no timer."""

    def __init__(self, max_in_flight: int = 1) -> None:
        self.max_in_flight = max_in_flight
        self.running: set[asyncio.Task[None]] = set()  # strong references until done
        self.batchers: list[Batcher[Any, Any]] = []

    def free(self) -> bool:
        return len(self.running) < self.max_in_flight


class Batcher(Generic[Item, Result]):
    """Runs ``function`` once per event-loop pass for the items submitted during it.

    At most ``max_in_flight`` batches wait for the database at once; items submitted
    meanwhile wait for one to finish and then go out together. Under load, batches
    therefore grow with the round-trip time instead of the round trips multiplying
    (what databases call group commit); an idle batcher sends at once. No item waits
    longer than ``max_wait`` seconds for a free slot: when the database stops
    answering, queued calls go out on their own and each sees its own timeout, not
    the sum of the timeouts of the batches ahead of it. With a ``lane``, the batches in
    flight counted are those of every batcher on it.
    """

    def __init__(
        self,
        function: BatchFunction[Item, Result],
        max_size: int = 256,
        max_in_flight: int = 1,
        max_wait: float = 0.05,
        lane: Lane | None = None,
    ) -> None:
        self._function = function
        self._max_size = max_size
        # Its own, unless it shares one (then ``max_in_flight`` is the lane's).
        self._lane = lane if lane is not None else Lane(max_in_flight)
        self._lane.batchers.append(self)
        self._max_wait = max_wait
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flush_scheduled = False
        self._overdue: asyncio.TimerHandle | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule_flush()
        return await future

    def _schedule_flush(self) -> None:
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        if self._lane.free():
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
        elif self._overdue is None:
            self._overdue = loop.call_later(self._max_wait, self._flush, True)

    def _flush(self, overdue: bool = False) -> None:
        """Send pending items, in batches of ``max_size``, while a slot is free."""
        self._flush_scheduled = False
        if overdue:
            self._overdue = None
        while self._pending and (overdue or self._lane.free()):
            batch, self._pending = (
                self._pending[: self._max_size],
                self._pending[self._max_size :],
            )
            task = asyncio.ensure_future(self._run(batch))
            self._lane.running.add(task)
            task.add_done_callback(self._finished)
        if not self._pending and self._overdue is not None:
            self._overdue.cancel()  # everyone it was set for has gone out
            self._overdue = None
        self._schedule_flush()  # items left behind full slots: their max_wait runs

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._lane.running.discard(task)
        for batcher in self._lane.batchers:  # whoever waits for the lane, this one first
            batcher._schedule_flush()

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            answers = await self._function([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for a batch of {len(batch)}")
        except asyncio.CancelledError:  # the app is stopping
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue  # its caller was cancelled; the others still get their answers
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
