"""Action modules: hooks that run around every write of an entity.

An app keeps them in one package (``<app>.models.actions``); ``<package>.<entity>``
may define any of::

    async def before_insert(ctx, doc): ...   # may change doc, or raise a models.errors error
    async def after_insert(ctx, doc): ...    # doc is stored, with its _id
    async def before_update(ctx, doc): ...   # doc is the document as it will be stored
    async def after_update(ctx, doc): ...
    async def before_delete(ctx, doc): ...   # raise Forbidden(...) to refuse
    async def after_delete(ctx, doc): ...

``ctx.registry`` is the service locator (``ctx.registry['transomMsgClient']``, the
transom way), ``ctx.services`` the same services typed (``ctx.services.message_client``),
``ctx.user`` the caller (a ``Principal``), ``ctx.db`` the database. The errors of
``models/errors.py`` (``Invalid``, ``Forbidden``, ``TooManyRequests``...) refuse the
write with their status. A function named ``before_...``/``after_...`` that is not a
hook, or an action module without an entity, stops start-up (``ModelError``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..auth.tokens import Principal
from ..db import Database
from ..registry import Registry
from .errors import ModelError

if TYPE_CHECKING:
    from ..services import Services
    from .base import Entity

__all__ = ["ActionContext"]

log = logging.getLogger(__name__)

HOOK_NAMES = (
    "before_insert",
    "after_insert",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
)
Hook = Callable[["ActionContext", dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ActionContext:
    registry: Registry
    services: Services
    user: Principal
    db: Database
    entity: Entity


class Actions:
    """The hooks of one entity; missing hooks do nothing."""

    def __init__(self, module: ModuleType | None) -> None:
        self._hooks: dict[str, Hook] = {}
        for name in HOOK_NAMES:
            hook = getattr(module, name, None) if module else None
            if hook is not None:
                self._hooks[name] = hook

    def __contains__(self, name: str) -> bool:
        return name in self._hooks

    async def before(self, event: str, ctx: ActionContext, doc: dict[str, Any]) -> None:
        """Run ``before_<event>``; the error it raises refuses the write."""
        hook = self._hooks.get(f"before_{event}")
        if hook is not None:
            await hook(ctx, doc)

    async def after(self, event: str, ctx: ActionContext, doc: dict[str, Any]) -> None:
        """Run ``after_<event>``. The write has happened, so a failure is logged, not raised:
        the client must not retry a write that succeeded."""
        hook = self._hooks.get(f"after_{event}")
        if hook is None:
            return
        try:
            await hook(ctx, doc)
        except Exception:
            log.exception("%s.after_%s failed", ctx.entity.name, event)


def load_actions(package: str, entity_name: str) -> Actions:
    """Import ``<package>.<entity_name>`` if it exists; ModelError for a function
    that looks like a hook but is none (``after_inserted``)."""
    module_name = f"{package}.{entity_name}"
    if importlib.util.find_spec(module_name) is None:
        return Actions(None)
    module = importlib.import_module(module_name)
    for name in vars(module):
        if name.startswith(("before_", "after_")) and name not in HOOK_NAMES:
            close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ModelError(
                f"models/actions/{entity_name}.py: {name} is not a hook{hint}; "
                f"hooks are {', '.join(HOOK_NAMES)}"
            )
    return Actions(module)


def check_action_modules(package: str, entity_names: set[str]) -> None:
    """ModelError for an action module of ``package`` whose entity does not exist (a
    misspelt name)."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name not in entity_names:
            raise ModelError(
                f"models/actions/{info.name}.py has no entity {info.name!r} "
                f"(entities: {', '.join(sorted(entity_names))})"
            )
