"""Fixtures: a real database over TCP, the app served by pytest-tornado, real clients.

The database is SecantusDB (MongoDB wire protocol) started in-process for the
session, unless MONGODB_URI is set, in which case the tests run against that
server (a real mongod). Each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.web

from {{ cookiecutter.project_slug }} import app as application
from {{ cookiecutter.project_slug }} import logs
from {{ cookiecutter.project_slug }} import registry as keys
from {{ cookiecutter.project_slug }}.config import Settings
from {{ cookiecutter.project_slug }}.embedded_db import IN_MEMORY, client_uri, start_embedded_database

from .support import Api, Report, Sockets

TEST_SECRET = "test-secret-" + "x" * 40

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
)


def _fast_fanout_default() -> bool:
    """FAST_FANOUT from the environment (default true): ``FAST_FANOUT=false pytest`` runs
    every test on stock python-socketio; tests that compare both paths still do."""
    value = os.environ.get("FAST_FANOUT", "true").lower()
    if value not in ("true", "false"):
        raise pytest.UsageError(f"FAST_FANOUT must be true or false, got {value!r}")
    return value == "true"


FAST_FANOUT = _fast_fanout_default()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(fnmatch.fnmatch(item.path.name, pattern) for pattern in REALTIME_SUITES):
            item.add_marker(pytest.mark.realtime)


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    server = start_embedded_database(IN_MEMORY, ttl_sweep_seconds=1)
    yield client_uri(server)
    server.stop()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Per-test settings changes. Override with a fixture of the same name, or with
    ``@pytest.mark.parametrize("settings_overrides", [{"login_lockout_seconds": 2}])``."""
    return {}


@pytest.fixture
def io_loop(io_loop):
    """pytest-tornado's loop, minus the tasks engine.io leaves sleeping (one ping task per
    closed socket): cancelled before the loop closes instead of warned about."""
    yield io_loop
    loop = io_loop.asyncio_loop
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@pytest.fixture
def settings(mongodb_uri: str, settings_overrides: dict[str, Any]) -> Settings:
    base = Settings(
        app_env="test",
        mongodb_uri=mongodb_uri,
        mongodb_db=f"test_{uuid.uuid4().hex[:16]}",
        mongodb_timeout_ms=3000,
        jwt_secret=TEST_SECRET,
        # Every test signs up and writes from 127.0.0.1: the per-address sign-up limit
        # and the per-user write and presence limits are off here, and on in the tests
        # of each.
        signups_per_address=0,
        writes_per_minute_per_user=0,
        broadcasts_per_minute_per_user=0,
        presence_requests_per_minute_per_user=0,
        fast_fanout=FAST_FANOUT,
{%- if cookiecutter.message_queue == "redis" %}
        # A channel of its own: concurrent test runs must not share Socket.IO rooms.
        redis_channel=f"test-{uuid.uuid4().hex}",
{%- endif %}
    )
    return base.model_copy(update=settings_overrides)


@pytest.fixture
def app(io_loop, settings: Settings) -> Iterator[tornado.web.Application]:
    """The application (make_app) with its own database; pytest-tornado serves it."""
    web_app = application.make_app(settings)
    io_loop.run_sync(lambda: application.start(web_app))
    yield web_app

    async def tear_down() -> None:
        registry = web_app.settings["registry"]
        await registry[keys.MONGO_CLIENT].drop_database(settings.mongodb_db)
        await application.stop(web_app)

    io_loop.run_sync(tear_down)


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """The app's own logging set-up at LOG_LEVEL=DEBUG (pytest's caplog still sees it)."""
    root, driver = logging.getLogger(), logging.getLogger("pymongo")
    saved = (root.handlers[:], root.level, driver.level)
    logs.configure_logging("DEBUG")
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    driver.setLevel(saved[2])


@pytest.fixture
def report(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Report:
    """Print a line of figures on the terminal even while pytest captures output: the
    evidence of the fault, load and fuzz tests (requests tried, 5xx seen, messages sent
    and received), prefixed with the test file's name, e.g. ``[load]``."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[{prefix}] {line}", flush=True)

    return emit


@pytest.fixture
def registry(app: tornado.web.Application):
    return app.settings["registry"]


@pytest.fixture
def db(registry):
    return registry[keys.DATABASE]


@pytest.fixture
def api(app, http_client, base_url: str) -> Api:
    # `app` is requested here (and not only through pytest-tornado's dynamic lookup) so
    # that parametrized settings reach every test that talks to the app.
    return Api(http_client, base_url)


@pytest.fixture
def sockets(app, http_server, base_url: str, io_loop) -> Iterator[Sockets]:
    opened = Sockets(base_url)
    yield opened
    io_loop.run_sync(opened.close_all)


@pytest.fixture
def base_url(http_port: int) -> str:
    # 127.0.0.1 rather than pytest-tornado's "localhost": no IPv6 detour.
    return f"http://127.0.0.1:{http_port}"
