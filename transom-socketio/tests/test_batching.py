"""Concurrent calls answered by one round trip, each caller with its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from transom_socketio.batching import Batcher, Lane


class Recorder:
    """A batch function that records each batch and answers item -> item * 10."""

    def __init__(self, fail_items: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.fail_items = fail_items

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0)  # a round trip
        return [ValueError(f"item {i}") if i in self.fail_items else i * 10 for i in items]


@pytest.mark.gen_test
async def test_calls_made_together_share_one_batch_and_each_gets_its_own_answer():
    recorder = Recorder()
    batcher = Batcher(recorder)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert answers == [i * 10 for i in range(20)]
    assert recorder.batches == [list(range(20))]


@pytest.mark.gen_test
async def test_a_lone_call_is_answered_without_waiting_for_company():
    recorder = Recorder()
    batcher = Batcher(recorder)
    assert await asyncio.wait_for(batcher.submit(7), timeout=1) == 70
    assert await asyncio.wait_for(batcher.submit(8), timeout=1) == 80
    assert recorder.batches == [[7], [8]]


@pytest.mark.gen_test
async def test_batches_never_exceed_max_size():
    recorder = Recorder()
    batcher = Batcher(recorder, max_size=4)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert answers == [i * 10 for i in range(10)]
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.gen_test
async def test_an_item_refused_fails_only_its_own_caller():
    batcher = Batcher(Recorder(fail_items=frozenset({3})))
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert answers[:3] == [0, 10, 20] and answers[4] == 40
    assert isinstance(answers[3], ValueError) and str(answers[3]) == "item 3"


@pytest.mark.gen_test
async def test_a_failed_round_trip_fails_every_caller_of_that_batch_only():
    calls = 0

    async def flaky(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return items

    batcher = Batcher(flaky)
    first = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in first)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 1, 2]


@pytest.mark.gen_test
async def test_a_cancelled_caller_does_not_disturb_the_others():
    recorder = Recorder()
    batcher = Batcher(recorder)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)


@pytest.mark.gen_test
async def test_an_answer_count_that_does_not_match_fails_the_batch():
    async def short(items: list[int]) -> list[int | BaseException]:
        return items[:-1]

    batcher = Batcher(short)
    answers = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(answer, RuntimeError) for answer in answers)


class Gate:
    """A batch function whose round trips end only when the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        return items


async def passes(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def submitted_passes_apart(batcher: Batcher[int, int], items: list[int]) -> list[Any]:
    """Submits each item a few event-loop passes after the one before."""
    calls = []
    for item in items:
        calls.append(asyncio.ensure_future(batcher.submit(item)))
        await passes(3)
    return calls


async def one_then_three(
    first: Batcher[int, int], then: Batcher[int, int]
) -> tuple[asyncio.Future[int], list[asyncio.Future[int]]]:
    """Call 0 on ``first``; with its batch out, calls 1 and 2 on ``then`` together, and
    call 3 a few passes later. Returns call 0 and the three others."""
    call = asyncio.ensure_future(first.submit(0))
    await passes(3)
    others = [asyncio.ensure_future(then.submit(i)) for i in (1, 2)]
    await passes(3)
    others.append(asyncio.ensure_future(then.submit(3)))
    await passes(3)
    return call, others


@pytest.mark.gen_test
async def test_calls_made_while_a_batch_is_in_flight_go_out_together_after_it():
    gate = Gate()
    batcher = Batcher(gate)
    first, later = await one_then_three(batcher, batcher)
    assert gate.batches == [[0]]  # the others wait for the round trip in flight
    gate.gate.set()
    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert gate.batches == [[0], [1, 2, 3]]


@pytest.mark.gen_test
async def test_max_in_flight_batches_go_out_side_by_side():
    gate = Gate()
    calls = await submitted_passes_apart(Batcher(gate, max_in_flight=2), [0, 1, 2])
    assert gate.batches == [[0], [1]]
    gate.gate.set()
    assert await asyncio.gather(*calls) == [0, 1, 2]
    assert gate.batches == [[0], [1], [2]]


@pytest.mark.gen_test
async def test_no_call_waits_longer_than_max_wait_behind_a_batch_that_does_not_return():
    # A database that stopped answering: the call queued behind the stuck batch goes
    # out on its own after max_wait, so it sees its own timeout, not two in a row.
    gate = Gate()
    calls = await submitted_passes_apart(Batcher(gate, max_wait=0.02), [0, 1])
    assert gate.batches == [[0]]
    await asyncio.sleep(0.1)
    assert gate.batches == [[0], [1]]
    gate.gate.set()
    assert await asyncio.gather(*calls) == [0, 1]


@pytest.mark.gen_test
async def test_batchers_on_one_lane_take_turns_and_each_gathers_meanwhile():
    # Two kinds of call share the database: while one kind's batch is out, the other
    # kind's calls wait and go out together when it returns, and the other way round.
    lane = Lane()
    inserts, deletes = Gate(), Gate()
    insert, delete = Batcher(inserts, lane=lane), Batcher(deletes, lane=lane)
    first, waiting = await one_then_three(insert, delete)
    assert (inserts.batches, deletes.batches) == ([[0]], [])
    inserts.gate.set()
    assert await first == 0
    await passes(3)
    assert deletes.batches == [[1, 2, 3]]  # all that gathered, in one batch
    later = [asyncio.ensure_future(insert.submit(i)) for i in (4, 5)]
    await passes(3)
    assert inserts.batches == [[0]]  # the deletes' batch is out
    deletes.gate.set()
    assert await asyncio.gather(*waiting, *later) == [1, 2, 3, 4, 5]
    assert inserts.batches == [[0], [4, 5]]


@pytest.mark.gen_test
async def test_a_call_waits_no_longer_than_max_wait_behind_another_kind_of_batch():
    lane = Lane()
    stuck, other = Gate(), Recorder()
    first = asyncio.ensure_future(Batcher(stuck, lane=lane).submit(0))
    await passes(3)
    queued = asyncio.ensure_future(Batcher(other, lane=lane, max_wait=0.02).submit(1))
    await asyncio.sleep(0.1)
    assert await queued == 10 and other.batches == [[1]]
    stuck.gate.set()
    assert await first == 0
