"""The pytest plugin: a real database over TCP, the app served by pytest-tornado, real clients.

Enable it in a project's ``tests/conftest.py``::

    pytest_plugins = ["transom_socketio.testing.plugin"]

    @pytest.fixture
    def make_app():
        return app.make_app          # settings -> Application

    @pytest.fixture
    def settings_class():
        return Settings              # the app's subclass of transom_socketio's Settings

The database is SecantusDB (MongoDB wire protocol) started in-process for the
session, unless MONGODB_URI is set, in which case the tests run against that server
(a real mongod). Each test gets a database of its own, dropped afterwards. Fixtures:
``settings`` (change it per test with ``settings_overrides``), ``app``, ``registry``,
``db``, ``api`` (``clients.Api``), ``sockets`` (``clients.Sockets``), ``smtp_server``
(``smtp.SmtpServer``), ``base_url``,
``debug_logging`` and ``report``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.web

from .. import logs
from .. import registry as keys
from ..config import Settings
from ..embedded_db import IN_MEMORY, client_uri, start_embedded_database
from . import smtp
from .clients import Api, Report, Sockets

__all__ = [
    "api",
    "app",
    "base_url",
    "db",
    "debug_logging",
    "io_loop",
    "make_app",
    "mongodb_uri",
    "registry",
    "report",
    "settings",
    "settings_class",
    "settings_overrides",
    "smtp_server",
    "sockets",
    "test_settings",
]

# A real SMTP server on 127.0.0.1 (aiosmtpd) recording what it receives: point the app at
# it with ``settings_overrides = {"smtp_url": smtp_server.url}``.
smtp_server = pytest.fixture(smtp.smtp_server)

TEST_SECRET = "test-secret-" + "x" * 40


def fast_fanout_default() -> bool:
    """FAST_FANOUT from the environment (default true): ``FAST_FANOUT=false pytest`` runs
    every test on stock python-socketio; tests that compare both paths still do."""
    value = os.environ.get("FAST_FANOUT", "true").lower()
    if value not in ("true", "false"):
        raise pytest.UsageError(f"FAST_FANOUT must be true or false, got {value!r}")
    return value == "true"


@pytest.fixture
def make_app() -> Callable[[Settings], tornado.web.Application]:
    """The app's factory. A project's conftest.py overrides this fixture."""
    raise pytest.UsageError(
        "define a `make_app` fixture in conftest.py returning your app's make_app"
    )


@pytest.fixture
def settings_class() -> type[Settings]:
    """The app's Settings class; a project's conftest.py overrides it with its own."""
    return Settings


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
def test_settings(mongodb_uri: str) -> dict[str, Any]:
    """The settings every test starts from; extend it with a fixture of the same name."""
    return {
        "app_env": "test",
        "mongodb_uri": mongodb_uri,
        "mongodb_db": f"test_{uuid.uuid4().hex[:16]}",
        "mongodb_timeout_ms": 3000,
        "jwt_secret": TEST_SECRET,
        # Every test signs up and writes from 127.0.0.1: the per-address sign-up limit
        # and the per-user write and presence limits are off here, and on in the tests
        # of each.
        "signups_per_address": 0,
        "writes_per_minute_per_user": 0,
        "broadcasts_per_minute_per_user": 0,
        "presence_requests_per_minute_per_user": 0,
        "fast_fanout": fast_fanout_default(),
        # A channel of its own (with REDIS_URL): concurrent runs must not share rooms.
        "redis_channel": f"test-{uuid.uuid4().hex}",
    }


@pytest.fixture
def settings(
    settings_class: type[Settings],
    test_settings: dict[str, Any],
    settings_overrides: dict[str, Any],
) -> Settings:
    return settings_class(**test_settings).model_copy(update=settings_overrides)


@pytest.fixture
def io_loop(io_loop: Any) -> Iterator[Any]:
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
def app(
    io_loop: Any,
    settings: Settings,
    make_app: Callable[[Settings], tornado.web.Application],
) -> Iterator[tornado.web.Application]:
    """The started application with its own database; pytest-tornado serves it."""
    from .. import app as application

    web_app = make_app(settings)
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
    evidence of the fault, load and fuzz tests, prefixed with the test file's name."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[{prefix}] {line}", flush=True)

    return emit


@pytest.fixture
def registry(app: tornado.web.Application) -> Any:
    return app.settings["registry"]


@pytest.fixture
def db(registry: Any) -> Any:
    return registry[keys.DATABASE]


@pytest.fixture
def api(app: tornado.web.Application, http_client: Any, base_url: str) -> Api:
    # `app` is requested here (and not only through pytest-tornado's dynamic lookup) so
    # that parametrized settings reach every test that talks to the app.
    return Api(http_client, base_url)


@pytest.fixture
def sockets(
    app: tornado.web.Application, http_server: Any, base_url: str, io_loop: Any
) -> Iterator[Sockets]:
    opened = Sockets(base_url)
    yield opened
    io_loop.run_sync(opened.close_all)


@pytest.fixture
def base_url(http_port: int) -> str:
    # 127.0.0.1 rather than pytest-tornado's "localhost": no IPv6 detour.
    return f"http://127.0.0.1:{http_port}"
