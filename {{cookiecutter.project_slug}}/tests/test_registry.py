"""The service locator (SPEC §1, §7): lookup, safe registration, and the transom names."""

from __future__ import annotations

import pytest

from {{ cookiecutter.project_slug }} import registry as keys
from {{ cookiecutter.project_slug }}.auth.nonces import SocketTokenStore
from {{ cookiecutter.project_slug }}.registry import Registry


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
