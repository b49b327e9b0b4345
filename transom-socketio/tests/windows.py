"""Waiting for room in a fixed counting window, for the tests of counted limits (login
throttling, account mail limits): counters restart at each multiple of the window's
length, so a test that needs N attempts counted together starts where N seconds of the
window remain. It may wait up to ``needed`` seconds: its test timeout must allow that.
"""

from __future__ import annotations

import asyncio
import time


async def window_with_room(window_seconds: float, needed: float) -> None:
    """Start where ``needed`` seconds remain in the current window of ``window_seconds``."""
    left = window_seconds - time.time() % window_seconds
    if left < needed:
        await asyncio.sleep(left + 0.05)
