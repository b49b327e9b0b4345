"""Concurrent calls of one kind answered by one database round trip.

Under load, many requests ask the database the same kind of thing within the same
pass of the event loop: is this JWT revoked? store this socket token. A ``Batcher``
collects the calls made during one pass and answers them all with one query
(``find`` with ``$in``, ``insert_many``), so 16 concurrent requests cost one round
trip instead of 16. A lone call goes out on the next pass: nothing waits for a batch
to fill, so a quiet server answers as fast as without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Answers for a batch, in the order of its items: a result, or an exception that only
# that item's caller raises. If the function raises, every caller in the batch does.
BatchFunction = Callable[[list[Item]], Awaitable[list[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    """Runs ``function`` once per event-loop pass for the items submitted during it."""

    def __init__(self, function: BatchFunction[Item, Result], max_size: int = 256) -> None:
        self._function = function
        self._max_size = max_size
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, future))
        return await future

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self._max_size],
                self._pending[self._max_size :],
            )
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

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
