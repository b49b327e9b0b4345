"""Issue 15: a mistake in an entity or an action module stops start-up with one line."""

from __future__ import annotations

import ast
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from bson import ObjectId
from example_app import models as app_models
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from example_app.models import actions as app_actions

from transom_socketio.config import ConfigError
from transom_socketio.models import actions
from transom_socketio.models.base import Entity
from transom_socketio.models.errors import ModelError
from transom_socketio.shapes import Ref, Shape, Text
from transom_socketio.web.entities import entity_routes


def entity(fields: type[Shape], **attributes: Any) -> Entity:
    """An entity named ``note_<random>`` (its action module, if any, is looked up by it)."""
    attributes.setdefault("name", f"note_{uuid.uuid4().hex[:8]}")
    return type("Note", (Entity,), {"Fields": fields, **attributes})()


class Fine(Shape):
    title: Annotated[str, Text(max_length=80)]


def refused(entities: tuple[Entity, ...]) -> str:
    with pytest.raises(ModelError) as caught:
        entity_routes(entities, ACTIONS_PACKAGE)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)  # __main__ prints it as one line, exit 2
    assert "\n" not in message
    return message


@pytest.fixture
def action_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory searched for action modules, as if it were models/actions/."""
    monkeypatch.setattr(app_actions, "__path__", [*app_actions.__path__, str(tmp_path)])
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith(f"{ACTIONS_PACKAGE}.note_")]:
        del sys.modules[name]


def served_patterns(entities: tuple[Entity, ...]) -> set[str]:
    return {pattern for pattern, _, _ in entity_routes(entities, ACTIONS_PACKAGE)}


def test_the_app_s_own_entities_pass_the_checks():
    patterns = served_patterns(ENTITIES)
    for each in ENTITIES:
        assert {f"/api/v1/db/{each.name}", f"/api/v1/db/{each.name}/([^/]+)"} <= patterns


def test_a_misspelt_hook_is_refused(action_dir: Path):
    note = entity(Fine)
    (action_dir / f"{note.name}.py").write_text("async def after_inserted(ctx, doc): ...\n")
    message = refused((*ENTITIES, note))
    assert "after_inserted is not a hook (did you mean after_insert?)" in message


def test_an_action_module_without_an_entity_is_refused(action_dir: Path):
    (action_dir / "note_orphan.py").write_text("async def after_insert(ctx, doc): ...\n")
    message = refused(ENTITIES)
    assert "models/actions/note_orphan.py has no entity 'note_orphan'" in message


def test_a_reference_to_an_entity_that_does_not_exist_is_refused():
    class Linked(Shape):
        parent: Annotated[ObjectId, Ref("folder")]

    message = refused((*ENTITIES, entity(Linked)))
    assert "Ref('folder') names no entity" in message


def test_a_reference_to_another_entity_is_accepted():
    class Linked(Shape):
        about: Annotated[ObjectId, Ref("message")] | None = None

    linked = entity(Linked)
    patterns = served_patterns((*ENTITIES, linked))
    assert {f"/api/v1/db/{linked.name}", f"/api/v1/db/{linked.name}/([^/]+)"} <= patterns
    assert linked.references() == {"about": "message"}


@pytest.mark.parametrize(
    ("annotation", "why"),
    [
        (list[str], "unsupported field type list[str]"),
        (str, "unsupported field type <class 'str'>"),  # text needs its Text(...) rules
        (dict, "unsupported field type <class 'dict'>"),
    ],
)
def test_an_unsupported_field_type_is_refused(annotation: Any, why: str):
    fields = type("Odd", (Shape,), {"__annotations__": {"odd": annotation}})
    message = refused((*ENTITIES, entity(fields)))
    assert "field odd:" in message and why in message


def test_create_only_and_hidden_must_name_a_field():
    message = refused((*ENTITIES, entity(Fine, create_only=("titel",))))
    assert "create_only names no field 'titel'" in message
    message = refused((*ENTITIES, entity(Fine, hidden=("updated",))))
    assert "hidden names no key 'updated'" in message


def test_hidden_keys_are_left_out_of_answers_and_their_schema():
    note = entity(Fine, hidden=("updated_at",))
    schema = note.public_model.model_json_schema(mode="serialization")
    assert "updated_at" not in schema["properties"]
    doc = {"_id": ObjectId(), "title": "t", "owner": {"_id": ObjectId(), "username": "a"}}
    assert set(note.to_public({**doc, "created_at": 1, "updated_at": 2})) == {
        "_id",
        "title",
        "owner",
        "created_at",
    }


def test_the_data_model_imports_nothing_from_the_web_layer():
    """Errors of models/ are mapped to HTTP at the web edge (web/errors.py, and the
    generic entity handlers of web/entities.py): the library's models/ and an app's."""
    leaks = []
    for package in (Path(actions.__file__).parent, Path(app_models.__file__).parent):
        for module in sorted(package.rglob("*.py")):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.ImportFrom) and "web" in (node.module or "").split("."):
                    leaks.append(f"{module}: from {node.module}")
    assert leaks == []


@pytest.mark.parametrize("field", ["owner", "created_at", "updated_at", "version", "id"])
def test_a_field_named_like_one_the_server_sets_is_refused(field: str):
    """The server sets these: such a field was overwritten on POST, and a PUT of it
    forged the date, or replaced the owner and left the document nobody's (found by a
    review)."""
    fields = type(
        "Clash", (Shape,), {"__annotations__": {field: Annotated[str, Text(max_length=8)]}}
    )
    message = refused((*ENTITIES, entity(fields)))
    assert f"field {field}: the server sets {field!r}" in message


@pytest.mark.parametrize("name", ["user", "socket_token", "revoked_token", "login_failure"])
def test_an_entity_whose_collection_is_the_engines_is_refused(name: str):
    """An entity named ``user`` listed and wrote the accounts (found by a review)."""
    message = refused((*ENTITIES, entity(Fine, name=name)))
    assert f"its collection '{name}s' is the engine's" in message


@pytest.mark.parametrize("name", ["Note", "note-card", "1note", "", "a" * 41, "note/x", "n.ote"])
def test_an_entity_name_that_is_not_a_lower_case_identifier_is_refused(name: str):
    message = refused((*ENTITIES, entity(Fine, name=name)))
    assert "a name is 1-40 lower-case letters" in message
