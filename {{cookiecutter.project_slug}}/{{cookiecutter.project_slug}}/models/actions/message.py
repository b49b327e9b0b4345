"""Hooks of the ``message`` entity: push every new message to the people who see it."""

from __future__ import annotations

import re
from typing import Any

from ... import registry as keys
from ..errors import TooManyRequests
from . import ActionContext

_LINE_ENDINGS = re.compile(r"\r\n?")


async def before_insert(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """Store one kind of line ending, whatever the client's platform. A broadcast reaches
    every socket, so each user may send only BROADCASTS_PER_MINUTE_PER_USER of them."""
    if doc.get("to") is None:
        retry_after = ctx.services.write_limits.broadcasts_per_user.hit(ctx.user.user_id)
        if retry_after is not None:
            raise TooManyRequests(retry_after, "too many broadcasts, slow down")
    doc["text"] = _LINE_ENDINGS.sub("\n", doc["text"])


async def after_insert(ctx: ActionContext, doc: dict[str, Any]) -> None:
    """A direct message goes to its addressee and its author (all their tabs);
    a broadcast goes to everyone connected."""
    messages = ctx.registry[keys.MESSAGE_CLIENT]  # the transom name; or ctx.services.message_client
    payload = ctx.entity.to_public(doc)
    if doc.get("to") is not None:
        await messages.emitToUsers([doc["to"], doc["author"]], "message", payload)
    else:
        await messages.emitToEveryone("message", payload)
