"""The library's suite runs against ``example_app``: the app a default bake of the
template generates (its handlers, its ``message`` entity and hooks, its demo page)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import Any

import pytest
import tornado.web

# The plugin and its clients are imported below, before pytest_plugins is read: have
# pytest rewrite their asserts all the same (Api.new_user's, for one).
pytest.register_assert_rewrite("transom_socketio.testing")

from example_app import db as example_db  # noqa: E402
from example_app.app import make_app as example_make_app  # noqa: E402
from example_app.settings import Settings  # noqa: E402

from transom_socketio.testing.plugin import fast_fanout_default  # noqa: E402

pytest_plugins = ["transom_socketio.testing.plugin"]

# The realtime and security suites (``pytest -m realtime``): CI runs them with the fast
# path on and off (FAST_FANOUT=false) and on the newest library releases.
REALTIME_SUITES = (
    "test_socket_*",
    "test_handshake*",
    "test_fanout*",
    "test_queues*",
    "test_message_client*",
    "test_messages_api*",
    "test_transport*",
    "test_security*",
    "test_scale_out*",
    "test_restart*",
    "test_recovery*",
    "test_presence*",
    "test_client_events*",
    "test_ephemeral*",
    "test_channels*",
    "test_channel_presence*",
)

FAST_FANOUT = fast_fanout_default()
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A module whose app shares rooms through Redis: ``pytestmark = ON_REDIS``. The suites
# that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
ON_REDIS = [pytest.mark.xdist_group("redis"), pytest.mark.on_redis]


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark the realtime suites as they are collected, before ``-m realtime`` selects."""
    if any(fnmatch.fnmatch(item.path.name, pattern) for pattern in REALTIME_SUITES):
        item.add_marker(pytest.mark.realtime)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The modules that use the one Redis (pytestmark = xdist_group("redis")) run on one
    # worker under ``-n 2 --dist loadgroup``, which pytest-xdist applies by suffixing
    # their ids with ``@redis``. Stop rather than run them on both workers at once.
    if not getattr(config.option, "loadgroup", False):
        return
    ungrouped = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not apply xdist_group to {len(ungrouped)} tests "
            f"(e.g. {ungrouped[0]}): check the pytest and pytest-xdist versions"
        )


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tornado.web.Application]:
    """example_app's factory; on Motor (the app's other driver) with TEST_MONGO_DRIVER=motor."""
    if os.environ.get("TEST_MONGO_DRIVER", "pymongo") == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        monkeypatch.setattr(example_db, "Client", AsyncIOMotorClient)
    return example_make_app


@pytest.fixture
def test_settings(test_settings: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The plugin's test settings; on Redis (REDIS_URL) in the modules marked ``ON_REDIS``,
    and in every test with TEST_REDIS=1."""
    if request.node.get_closest_marker("on_redis") or os.environ.get("TEST_REDIS") == "1":
        return {**test_settings, "redis_url": REDIS_URL}
    return test_settings


@pytest.fixture
def settings_class() -> type[Settings]:
    return Settings
