"""GET /health against a live database, and against one that does not answer."""

from __future__ import annotations

import socket

import pytest
from example_app.app import make_app

from transom_socketio import app as application


@pytest.mark.gen_test
async def test_health_reports_ok_when_the_database_answers(api):
    response = await api.request("GET", "/health")
    assert response.status == 200
    assert response.body == {"status": "ok", "mongo": "ok"}
    assert response.headers["Content-Type"].startswith("application/json")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.gen_test(timeout=20)
async def test_health_answers_503_json_when_the_database_is_unreachable(
    http_client, settings, io_loop
):
    unreachable = settings.model_copy(
        update={"mongodb_uri": f"mongodb://127.0.0.1:{_closed_port()}/", "mongodb_timeout_ms": 300}
    )
    down_app = make_app(unreachable)
    import tornado.httpserver
    import tornado.testing

    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(down_app)
    server.add_socket(sock)
    try:
        response = await http_client.fetch(f"http://127.0.0.1:{port}/health", raise_error=False)
        assert response.code == 503
        assert b'"mongo":"unreachable"' in response.body
    finally:
        server.stop()
        await application.stop(down_app)
