"""The service locator: lookup, safe registration, and the transom names."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from transom_socketio import app as application
from transom_socketio import registry as keys
from transom_socketio.auth.nonces import SocketTokenStore
from transom_socketio.registry import Registry
from transom_socketio.services import REGISTRY_NAMES, Services


def test_set_then_lookup_by_item_get_and_in():
    registry = Registry()
    service = object()
    assert registry.set("mailer", service) is service
    assert registry["mailer"] is service
    assert registry.get("mailer") is service
    assert "mailer" in registry
    assert "other" not in registry
    assert registry.get("other") is None
    assert registry.get("other", "fallback") == "fallback"


def test_a_missing_key_raises_key_error_naming_it_and_listing_what_is_registered():
    registry = Registry()
    registry.set("alpha", 1)
    registry.set("beta", 2)
    with pytest.raises(KeyError) as raised:
        registry["gamma"]
    message = str(raised.value)
    assert "gamma" in message
    assert "alpha" in message
    assert "beta" in message


def test_registering_a_key_twice_is_refused_unless_replace_is_explicit():
    registry = Registry()
    registry.set("cache", "first")
    with pytest.raises(KeyError, match="cache"):
        registry.set("cache", "second")
    assert registry["cache"] == "first"
    registry.set("cache", "second", replace=True)
    assert registry["cache"] == "second"


@pytest.mark.parametrize("key", ["", None, 3])
def test_keys_must_be_non_empty_strings(key):
    with pytest.raises(TypeError):
        Registry().set(key, object())


def test_the_app_registers_the_transom_names(registry):
    client = registry["transomMsgClient"]
    assert registry["transomMessageClient"] is client
    for method in ("emitToUsers", "emitToEveryone", "disconnectUsers"):
        assert callable(getattr(client, method))
    assert isinstance(registry["transomNonce"], SocketTokenStore)
    for key in (keys.SETTINGS, keys.DATABASE, keys.USERS, keys.TOKENS, keys.LOGIN_THROTTLE):
        assert key in registry


def test_the_typed_services_are_the_objects_the_registry_names(app, registry):
    services = app.settings["services"]
    assert isinstance(services, Services)
    for name, key in REGISTRY_NAMES.items():
        assert registry[key] is getattr(services, name)
    assert registry["transomMessageClient"] is services.message_client
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.users = None


def imported_modules(path: Path) -> set[str]:
    """The modules ``path`` imports, relative ones resolved against the package."""
    package = Path(application.__file__).parent
    parts = [package.name, *path.relative_to(package).with_suffix("").parts[:-1]]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_metrics_depends_on_neither_the_web_nor_the_realtime_layer():
    metrics = Path(application.__file__).parent / "metrics.py"
    imported = imported_modules(metrics)
    package = Path(application.__file__).parent.name
    layers = (f"{package}.web", f"{package}.realtime")
    assert not {name for name in imported if name.startswith(layers)}
