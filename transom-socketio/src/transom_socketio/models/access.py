"""Access rules: who may read, create, change or delete a document of an entity.

A rule is a MongoDB filter built for the caller: the documents they may act on. The
REST handlers put it IN the query that acts (web/entities.py): a list never returns a
document its rule excludes, and an update or a delete whose rule excludes the document
matches nothing, even when the document changed (a new owner or assignee) between the
handler's read and its write::

    class Task(Entity):
        read = SIGNED_IN                          # any signed-in user
        create = group("staff")                   # members of the group staff
        update = OWNER | user_field("assignee")   # its owner or its assignee
        delete = OWNER | group("moderators")      # its owner, or any moderator

The predefined rules: ``OWNER`` (the user in ``owner_field``), ``SIGNED_IN`` (any
signed-in user), ``ANYONE`` (anybody, signed in or not: for ``read`` only),
``NOBODY``, ``group(name, ...)`` (members of any of the named groups: the ``groups``
of the caller's JWT, always current since a change of a user's groups ends their
sessions), ``user_field(name)`` (the user a ``Ref("user")`` field names),
``Custom(query, description)`` (any filter); ``a | b`` allows what either allows.

The defaults: ``read``, ``update`` and ``delete`` are ``OWNER``, ``create`` is
``SIGNED_IN``. ``create`` takes only rules that need no document: ``SIGNED_IN``,
``group(...)``, ``NOBODY`` and their ``|`` (a refused creation answers 403). Every
route of an entity needs a signed-in caller, except its ``GET`` routes when ``read``
allows ``ANYONE`` (and the entity does not override ``readable_by``): they answer
without a token too, and with one. Each mistake is a ``ModelError`` at start-up, one
line naming the entity.

Each rule describes itself (``describe``): the OpenAPI document says who may do what
from it ("Change a task (its owner or its assignee only)").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from ..auth.tokens import Principal
from ..auth.users import GROUP_RULE
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

    def anonymous(self, entity: Entity) -> Query | None:
        """The filter of the documents a caller without a token may act on; None (the
        default) when the rule needs a signed-in caller (401 without a token)."""
        return None

    def needs_document(self) -> bool:
        """Whether the rule decides on a document (the default): such a rule cannot say
        who may create one. ``SIGNED_IN``, ``group(...)`` and ``NOBODY`` decide on the
        caller alone."""
        return True

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

    def needs_document(self) -> bool:
        return False

    def who(self, entity: Entity) -> str:
        return "any signed-in user"

    def describe(self, entity: Entity) -> str:
        return self.who(entity)


@dataclass(frozen=True, eq=False)
class _Anyone(Rule):
    def query(self, entity: Entity, user: Principal) -> Query:
        return {}

    def anonymous(self, entity: Entity) -> Query | None:
        return {}

    def needs_document(self) -> bool:
        return False

    def who(self, entity: Entity) -> str:
        return "anyone, signed in or not"

    def describe(self, entity: Entity) -> str:
        return self.who(entity)


@dataclass(frozen=True, eq=False)
class _Nobody(Rule):
    def query(self, entity: Entity, user: Principal) -> Query:
        return dict(MATCHES_NOTHING)

    def needs_document(self) -> bool:
        return False

    def who(self, entity: Entity) -> str:
        return "nobody"

    def describe(self, entity: Entity) -> str:
        return self.who(entity)


@dataclass(frozen=True)
class Group(Rule):
    """The members of any of the groups ``names`` (``group("editors", "admins")``)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ModelError("group() needs at least one group name")
        for name in self.names:
            # The names a user's groups may have (the administration API's rule).
            if not isinstance(name, str) or not GROUP_RULE.fullmatch(name):
                raise ModelError(
                    f"group({name!r}): a group name is 1 to 64 of a-z, 0-9, '_' and '-', "
                    "starting with a letter or a digit"
                )

    def query(self, entity: Entity, user: Principal) -> Query:
        member = not set(self.names).isdisjoint(user.groups)
        return {} if member else dict(MATCHES_NOTHING)

    def needs_document(self) -> bool:
        return False

    def who(self, entity: Entity) -> str:
        return f"members of {_either(list(self.names))}"


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
        built = self.build(user)
        if not isinstance(built, dict):
            # Refused rather than read as "no condition": inside ``a | b``, a falsy
            # filter stood for everything (found by a review: a rule returning None
            # for some users let them read every document).
            raise TypeError(
                f"Custom rule ({self.description}) returned {type(built).__name__}, not a "
                "filter (a dict; MATCHES_NOTHING for nothing)"
            )
        return built

    def who(self, entity: Entity) -> str:
        return self.description

    def describe(self, entity: Entity) -> str:
        return self.description


@dataclass(frozen=True)
class AnyOf(Rule):
    """What any of ``rules`` allows (``a | b``): everything if one of them allows
    everything (``OWNER | group("moderators")`` is no filter for a moderator)."""

    rules: tuple[Rule, ...]

    def query(self, entity: Entity, user: Principal) -> Query:
        return _either_query([rule.query(entity, user) for rule in self.rules])

    def anonymous(self, entity: Entity) -> Query | None:
        queries = [rule.anonymous(entity) for rule in self.rules]
        allowed = [query for query in queries if query is not None]
        return _either_query(allowed) if allowed else None

    def needs_document(self) -> bool:
        return any(rule.needs_document() for rule in self.rules)

    def _everyone(self) -> Rule | None:
        """ANYONE or SIGNED_IN if one of the rules is, the wider first."""
        return next((r for r in (ANYONE, SIGNED_IN) if r in self.rules), None)

    def who(self, entity: Entity) -> str:
        everyone = self._everyone()
        if everyone is not None:
            return everyone.who(entity)
        names = [rule.who(entity) for rule in self.rules if rule is not NOBODY] or ["nobody"]
        return _either(names)

    def describe(self, entity: Entity) -> str:
        if self._everyone() is not None or all(rule is NOBODY for rule in self.rules):
            return self.who(entity)
        return f"{self.who(entity)} only"

    def check(self, entity: Entity) -> None:
        for rule in self.rules:
            rule.check(entity)


def _either_query(queries: list[Query]) -> Query:
    """The filter of what any of ``queries`` matches, simplified: ``{}`` if one is."""
    if any(query == {} for query in queries):
        return {}
    kept = [query for query in queries if query != MATCHES_NOTHING]
    if not kept:
        return dict(MATCHES_NOTHING)
    return kept[0] if len(kept) == 1 else {"$or": kept}


def _either(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


OWNER: Rule = _Owner()
"""The user in the entity's ``owner_field``: the one who created the document."""
SIGNED_IN: Rule = _SignedIn()
"""Any signed-in user."""
ANYONE: Rule = _Anyone()
"""Anybody, signed in or not: for ``read`` only (the ``GET`` routes then need no token)."""
NOBODY: Rule = _Nobody()
"""No one: e.g. ``update = NOBODY`` for documents that never change."""


def group(*names: str) -> Rule:
    """The members of any of the named groups (a user's ``groups``); the names are
    checked here (ModelError)."""
    return Group(tuple(names))


def user_field(name: str) -> Rule:
    """The user the ``Ref("user")`` field ``name`` names (checked at start-up)."""
    return UserField(name)


__all__ = [
    "ANYONE",
    "NOBODY",
    "OWNER",
    "SIGNED_IN",
    "AnyOf",
    "Custom",
    "Group",
    "Query",
    "Rule",
    "UserField",
    "group",
    "user_field",
]
