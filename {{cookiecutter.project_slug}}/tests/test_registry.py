"""The service locator: what this app's action modules and code find under the transom names."""

from __future__ import annotations

from transom_socketio import registry as keys
from transom_socketio.auth.nonces import SocketTokenStore
from transom_socketio.services import REGISTRY_NAMES, Services


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
