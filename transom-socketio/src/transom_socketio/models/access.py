"""Access rules: who may read, change or delete a document of an entity.

A rule is a MongoDB filter built for the caller: the documents they may act on. The
REST handlers put it IN the query that acts (web/entities.py): a list never returns a
document its rule excludes, and an update or a delete whose rule excludes the document
matches nothing, even when the document changed (a new owner or assignee) between the
handler's read and its write. Every entity route requires a signed-in caller; a rule
chooses among the signed-in users::

    class Task(Entity):
        read = SIGNED_IN                          # any signed-in user
        update = OWNER | user_field("assignee")   # its owner or its assignee
        delete = OWNER                            # the default

The predefined rules: ``OWNER`` (the user in ``owner_field``), ``SIGNED_IN`` (any
signed-in user), ``NOBODY``, ``user_field(name)`` (the user a ``Ref("user")`` field
names), ``Custom(query, description)`` (any filter); ``a | b`` allows what either
allows. Each rule describes itself (``describe``): the OpenAPI document says who may
do what from it ("Change a task (its owner or its assignee only)").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from ..auth.tokens import Principal
from .errors import ModelError

if TYPE_CHECKING:
    from .base import Entity

Query = dict[str, Any]
# Matches no document: "_id" is never in an empty list.
MATCHES_NOTHING: Query = {"_id": {"$in": []}}


class Rule:
    """Who may act on a document. Subclasses give ``query`` and ``who``."""

    def query(self, entity: Entity, user: Principal) -> Query:
        """The filter of the documents of ``entity`` that ``user`` may act on."""
        raise NotImplementedError

    def who(self, entity: Entity) -> str:
        """Who the rule allows, as a noun phrase: ``its author``, ``any signed-in user``."""
        raise NotImplementedError

    def describe(self, entity: Entity) -> str:
        """The rule for the OpenAPI document: ``its author only``, ``any signed-in user``."""
        return f"{self.who(entity)} only"

    def check(self, entity: Entity) -> None:
        """Start-up checks of the rule against ``entity`` (ModelError, one line)."""

    def __or__(self, other: Rule) -> Rule:
        return AnyOf((*_parts(self), *_parts(other)))


def _parts(rule: Rule) -> tuple[Rule, ...]:
    return rule.rules if isinstance(rule, AnyOf) else (rule,)


@dataclass(frozen=True, eq=False)
class _Owner(Rule):
    def query(self, entity: Entity, user: Principal) -> Query:
        return {f"{entity.owner_field}._id": ObjectId(user.user_id)}

    def who(self, entity: Entity) -> str:
        return f"its {entity.owner_field}"


@dataclass(frozen=True, eq=False)
class _SignedIn(Rule):
    def query(self, entity: Entity, user: Principal) -> Query:
        return {}

    def who(self, entity: Entity) -> str:
        return "any signed-in user"

    def describe(self, entity: Entity) -> str:
        return self.who(entity)


@dataclass(frozen=True, eq=False)
class _Nobody(Rule):
    def query(self, entity: Entity, user: Principal) -> Query:
        return dict(MATCHES_NOTHING)

    def who(self, entity: Entity) -> str:
        return "nobody"

    def describe(self, entity: Entity) -> str:
        return self.who(entity)


@dataclass(frozen=True)
class UserField(Rule):
    """The user a ``Ref("user")`` field of the document names (``user_field("assignee")``)."""

    field: str

    def query(self, entity: Entity, user: Principal) -> Query:
        return {self.field: ObjectId(user.user_id)}

    def who(self, entity: Entity) -> str:
        return f"its {self.field}"

    def check(self, entity: Entity) -> None:
        if entity.references().get(self.field) != "user":
            raise ModelError(
                f"entity {entity.name}: user_field({self.field!r}) names no "
                f'Ref("user") field of {entity.name}'
            )


@dataclass(frozen=True)
class Custom(Rule):
    """Any filter: ``query(user)``, and who it allows in words (the OpenAPI text, as is).

    ``Custom(lambda user: {"to": None}, "anyone, for a broadcast")``.
    """

    build: Callable[[Principal], Query]
    description: str

    def query(self, entity: Entity, user: Principal) -> Query:
        return self.build(user)

    def who(self, entity: Entity) -> str:
        return self.description

    def describe(self, entity: Entity) -> str:
        return self.description


@dataclass(frozen=True)
class AnyOf(Rule):
    """What any of ``rules`` allows (``a | b``)."""

    rules: tuple[Rule, ...]

    def query(self, entity: Entity, user: Principal) -> Query:
        if any(rule is SIGNED_IN for rule in self.rules):
            return {}
        queries = [rule.query(entity, user) for rule in self.rules if rule is not NOBODY]
        if not queries:
            return dict(MATCHES_NOTHING)
        return queries[0] if len(queries) == 1 else {"$or": queries}

    def who(self, entity: Entity) -> str:
        if any(rule is SIGNED_IN for rule in self.rules):
            return SIGNED_IN.who(entity)
        names = [rule.who(entity) for rule in self.rules if rule is not NOBODY] or ["nobody"]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

    def describe(self, entity: Entity) -> str:
        everyone = any(rule is SIGNED_IN for rule in self.rules)
        if everyone or all(rule is NOBODY for rule in self.rules):
            return self.who(entity)
        return f"{self.who(entity)} only"

    def check(self, entity: Entity) -> None:
        for rule in self.rules:
            rule.check(entity)


OWNER: Rule = _Owner()
"""The user in the entity's ``owner_field``: the one who created the document."""
SIGNED_IN: Rule = _SignedIn()
"""Any signed-in user (every entity route requires a valid JWT)."""
NOBODY: Rule = _Nobody()
"""No one: e.g. ``update = NOBODY`` for documents that never change."""


def user_field(name: str) -> Rule:
    """The user the ``Ref("user")`` field ``name`` names (checked at start-up)."""
    return UserField(name)


__all__ = [
    "NOBODY",
    "OWNER",
    "SIGNED_IN",
    "AnyOf",
    "Custom",
    "Query",
    "Rule",
    "UserField",
    "user_field",
]
