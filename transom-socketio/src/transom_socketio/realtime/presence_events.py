"""The ``presence`` event: every socket is told when a user comes online or goes offline,
with PRESENCE_EVENTS=true (off by default: each change costs a delivery to every socket;
presence channels tell only those who asked, realtime/channels.py). The counts behind
the presence API are kept either way.

Only changes of state are announced, and a user's flapping is coalesced:

- their first socket makes them online, unless they are back within the grace period
  of their last departure, which nobody was told about;
- their last socket going starts a grace period (``PRESENCE_GRACE_SECONDS``); only if no
  socket of theirs came back by its end, on any process, are they announced offline.

So a page reload, or a client that connects and leaves in a loop, says nothing to
anyone. On top of that, announcements per user are capped
(``PRESENCE_ANNOUNCEMENTS_PER_MINUTE_PER_USER``, per process): an offline announcement
over the cap waits until the user's budget allows it (a comeback meanwhile cancels it),
and an online one is never held back (only announced after an offline one) but counts.
"""

from __future__ import annotations

import uuid
from typing import Any

import socketio

from ..ratelimit import RateLimiter
from .grace import Grace
from .presence import Presence
from .rooms import EVERYONE, NAMESPACE

# What a grace period keeps until its end: the user, and the mark of that departure.
Leaving = tuple[dict[str, Any], str]


class PresenceEvents:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        presence: Presence,
        grace_seconds: float,
        per_minute_per_user: int,
        announce: bool = True,
    ) -> None:
        self._sio = sio
        self._announces = announce
        self._presence = presence
        self._budget = RateLimiter(per_minute_per_user)
        self._leaving: Grace[str, Leaving] = Grace(grace_seconds, self._grace_ended)

    async def connected(self, user: dict[str, Any], skip_sid: str) -> None:
        """A socket of ``user`` was accepted (``skip_sid``: that socket, told nothing)."""
        user_id = str(user["_id"])
        self._leaving.cancel(user_id)
        counted = await self._presence.connected(user_id)
        if counted is not None and counted.news:
            self._budget.charge(user_id)
            await self._announce(user, online=True, skip_sid=skip_sid)

    async def disconnected(self, user: dict[str, Any]) -> None:
        """A socket of ``user`` went: if it was their last, their grace period starts."""
        user_id = str(user["_id"])
        mark = uuid.uuid4().hex
        counted = await self._presence.disconnected(user_id, mark)
        if counted is not None and counted.news:
            self._leaving.start(user_id, (user, mark))

    async def _grace_ended(self, user_id: str, leaving: Leaving) -> None:
        wait = self._budget.hit(user_id)
        if wait is not None:
            self._leaving.start(user_id, leaving, seconds=wait)  # over the cap: later
            return
        user, mark = leaving
        if await self._presence.left(user_id, mark):
            await self._announce(user, online=False)

    async def _announce(
        self, user: dict[str, Any], *, online: bool, skip_sid: str | None = None
    ) -> None:
        """Tell every socket (only the id and username: everyone gets it), if on."""
        if not self._announces:
            return
        who = {"_id": str(user["_id"]), "username": user.get("username")}
        event = {"user": who, "online": online, "sockets": 1 if online else 0}
        await self._sio.emit("presence", event, to=EVERYONE, namespace=NAMESPACE, skip_sid=skip_sid)

    async def close(self) -> None:
        """Stop the grace periods running (their users are not announced offline)."""
        await self._leaving.close()
