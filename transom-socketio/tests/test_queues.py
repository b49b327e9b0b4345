"""The per-socket queues engine.io uses (realtime/accel/queues.py), as engine.io uses them."""

from __future__ import annotations

import asyncio

import pytest

from transom_socketio.realtime.accel.queues import PacketQueue
from transom_socketio.testing.clients import requires_accel

pytestmark = requires_accel


@pytest.mark.gen_test
async def test_packets_come_out_in_the_order_they_were_put():
    queue = PacketQueue()
    for packet in ("a", "b"):
        queue.put_nowait(packet)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    assert queue.get_nowait() == "b"
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


@pytest.mark.gen_test
async def test_a_waiting_writer_gets_the_next_packet():
    queue = PacketQueue()
    waiting = asyncio.ensure_future(asyncio.wait_for(queue.get(), 1))
    await asyncio.sleep(0)
    await queue.put("late")
    assert await waiting == "late"
    assert queue.empty()


@pytest.mark.gen_test
async def test_a_wait_that_timed_out_does_not_swallow_the_next_packet():
    # engine.io's writer waits ping interval + timeout, then waits again.
    queue = PacketQueue()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    queue.put_nowait("after the timeout")
    assert queue.qsize() == 1
    assert await asyncio.wait_for(queue.get(), 1) == "after the timeout"


@pytest.mark.gen_test
async def test_join_waits_until_every_packet_is_marked_done():
    queue = PacketQueue()
    queue.put_nowait("a")
    queue.put_nowait("b")
    joined = asyncio.ensure_future(queue.join())
    await asyncio.wait_for(queue.get(), 1)
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()
