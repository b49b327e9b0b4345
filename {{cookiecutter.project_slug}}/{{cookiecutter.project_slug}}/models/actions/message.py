"""Hooks of the ``message`` entity: push every new message to the people who see it.

Each message is emitted under the key ``message:<id>``, so that a socket which
recovers after the message was edited receives it edited, and one which recovers
after it was deleted does not receive it (the message client's ``replace`` and
``retract``). Sockets that received it live keep what they received.
"""

from __future__ import annotations

import re
from typing import Any

from transom_socketio import registry as keys
from transom_socketio.models.actions import ActionContext
from transom_socketio.models.errors import Forbidden, Invalid, TooManyRequests
from transom_socketio.realtime.channels import ChannelRefused

from ...channels import channels

_LINE_ENDINGS = re.compile(r"\r\n?")


async def before_insert(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """Store one kind of line ending, whatever the client's platform. A channel's message
    needs an author who may subscribe to it. A broadcast reaches every socket, so each
    user may send only BROADCASTS_PER_MINUTE_PER_USER of them."""
    if doc.get("channel") is not None:
        if doc.get("to") is not None:
            raise Invalid("a message goes to a user or to a channel, not both", field="channel")
        await _may_write_to(ctx, doc["channel"])
    elif doc.get("to") is None:
        retry_after = ctx.services.write_limits.broadcasts_per_user.hit(ctx.user.user_id)
        if retry_after is not None:
            raise TooManyRequests(retry_after, "too many broadcasts, slow down")
    doc["text"] = _LINE_ENDINGS.sub("\n", doc["text"])


async def before_update(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """An edit is checked as a new message is: its author must still be allowed in its
    channel (which an edit cannot change). Else someone removed from a group could keep
    writing into the group's channel by editing what they posted there while in it."""
    if doc.get("channel") is not None:
        await _may_write_to(ctx, doc["channel"])
    doc["text"] = _LINE_ENDINGS.sub("\n", doc["text"])


async def _may_write_to(ctx: ActionContext, channel: str) -> None:
    """403 unless the user may subscribe to ``channel`` (channels.py's rules)."""
    try:
        await channels.authorize(ctx.user, channel)
    except ChannelRefused as refused:
        raise Forbidden(f"channel not allowed: {refused.message}") from None


def recovery_key(doc: dict[str, Any]) -> str:
    """What the message client knows a message's emits by."""
    return f"message:{doc['_id']}"


async def after_insert(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """A direct message goes to its addressee and its author (all their tabs), a
    channel's to its subscribers, a broadcast to everyone connected."""
    messages = ctx.registry[keys.MESSAGE_CLIENT]  # the transom name; or ctx.services.message_client
    payload = ctx.entity.to_public(doc)
    key = recovery_key(doc)
    if doc.get("to") is not None:
        await messages.emitToUsers([doc["to"], doc["author"]], "message", payload, key=key)
    elif doc.get("channel") is not None:
        await messages.emitToChannel(doc["channel"], "message", payload, key=key)
    else:
        await messages.emitToEveryone("message", payload, key=key)


async def after_update(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """A socket that recovers the message from now on gets its new text."""
    await ctx.registry[keys.MESSAGE_CLIENT].replace(recovery_key(doc), ctx.entity.to_public(doc))


async def after_delete(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """A socket that recovers from now on does not get the message."""
    await ctx.registry[keys.MESSAGE_CLIENT].retract(recovery_key(doc))
