"""The fast path's switch and version guard (realtime/accel/): stock python-socketio otherwise.

FAST_FANOUT governs everything in ``realtime/accel/``; with it on, the fast path
still turns itself on only for the exact library versions it was tested with, and
otherwise logs one WARNING naming the library and runs stock python-socketio,
which delivers all the same.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import engineio
import pytest
import socketio

import transom_socketio
from transom_socketio import registry as keys
from transom_socketio.realtime.accel import versions
from transom_socketio.testing.clients import requires_accel

ACCEL = "transom_socketio.realtime.accel"
MESSAGES = "/api/v1/db/message"


def accel_classes(sio: Any) -> list[str]:
    """The classes of the fast path among the server's, its engine.io server's and its
    manager's."""
    classes = [*type(sio).__mro__, *type(sio.eio).__mro__, *type(sio.manager).__mro__]
    return sorted({cls.__qualname__ for cls in classes if cls.__module__.startswith(ACCEL)})


@pytest.fixture
def untested_engineio(monkeypatch: pytest.MonkeyPatch) -> None:
    untested = {**versions.TESTED, "python-engineio": "4.99.0"}
    monkeypatch.setattr(versions, "installed", lambda: untested)


@pytest.fixture
def settings_overrides(untested_engineio: None) -> dict[str, Any]:
    return {"fast_fanout": True}


async def delivered(api: Any, sockets: Any) -> list[Any]:
    ada = await api.new_user()
    tabs = [await sockets.connect(await api.socket_token(ada)) for _ in range(2)]
    sent = await api.request("POST", MESSAGES, {"text": "still delivered"}, token=ada.token)
    assert sent.status == 201
    return [(await tab.wait_for("message"))[0]["text"] for tab in tabs]


@pytest.mark.gen_test(timeout=30)
async def test_an_untested_library_version_runs_stock_after_one_warning(
    api: Any, sockets: Any, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = [
        record
        for record in caplog.get_records("setup")
        if record.name == ACCEL and record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "python-engineio 4.99.0" in warnings[0].getMessage()
    sio = registry[keys.SOCKET_SERVER]
    assert accel_classes(sio) == []
    assert type(sio.eio) is engineio.AsyncServer
    assert isinstance(sio.manager, socketio.AsyncManager)
    assert await delivered(api, sockets) == ["still delivered"] * 2


@pytest.mark.parametrize("settings_overrides", [{"fast_fanout": False}])
@pytest.mark.gen_test(timeout=30)
async def test_fast_fanout_off_uses_nothing_of_the_fast_path(
    api: Any, sockets: Any, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert not [r for r in caplog.get_records("setup") if r.name == ACCEL]
    assert accel_classes(registry[keys.SOCKET_SERVER]) == []
    assert await delivered(api, sockets) == ["still delivered"] * 2


@requires_accel
@pytest.mark.parametrize("settings_overrides", [{"fast_fanout": True}])
@pytest.mark.gen_test(timeout=30)
async def test_the_tested_versions_run_the_fast_path(
    api: Any, sockets: Any, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert not [r for r in caplog.get_records("setup") if r.name == ACCEL]
    sio = registry[keys.SOCKET_SERVER]
    assert "FanoutManager" in accel_classes(sio)
    assert "EngineIOServer" in accel_classes(sio)
    assert await delivered(api, sockets) == ["still delivered"] * 2
    assert sio.manager.delivered_fast == 2


# The internals the fast path reads or replaces (engine.io's socket queue, sockets and
# async driver, python-socketio's packet sending and room bookkeeping, Tornado's stream).
INTERNALS = re.compile(
    r"_send_eio_packet|_write_buffer|_unfinished_tasks|_engineio_server_class|\b_async\b"
    r"|create_queue|receive_queue|basic_disconnect|_websocket_handler|_handle_emit"
    r"|websocket_handlers|ws_connection|queue\.put|\.eio\.sockets"
)


def test_no_module_outside_the_fence_touches_the_fast_paths_internals() -> None:
    package = Path(transom_socketio.__file__).parent
    fence = package / "realtime" / "accel"
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if fence not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNALS.search(line)
    ]
    assert found == []
