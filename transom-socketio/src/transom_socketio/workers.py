"""``python -m <app> --workers N``: N processes on one port.

The parent reserves the port, forks N workers that each run the whole app (their
own event loop, database client and sockets) and share Socket.IO rooms through
Redis, then forwards SIGINT/SIGTERM to them and waits. Each worker listens on the
port with SO_REUSEPORT, so the kernel spreads new connections evenly over them
(with one shared listening socket, whichever worker wakes first takes them all).

Limits: the embedded database lives in one process, so MONGODB_URI is required;
the kernel spreads connections over the workers, so Socket.IO's long-polling
(several requests per session) cannot work and transports are set to websocket;
each worker has its own /metrics; a crashed worker is not restarted (run under a
supervisor - systemd, Kubernetes, compose ``restart:`` - for that).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from types import FrameType

import tornado.netutil

from .config import AppSettings, ConfigError
from .server import MakeApp, cannot_listen, run

log = logging.getLogger(__name__)


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the parent dies, even by SIGKILL,
    so no worker is left serving on its own (Linux; elsewhere use a supervisor)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening socket that holds the port (a free one for port 0) while
    the workers bind theirs; not listening, it never takes a connection."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    holder = socket.socket(family, kind, proto)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(address)
    return holder


def run_workers(settings: AppSettings, count: int, make_app: MakeApp[AppSettings]) -> int:
    """Fork ``count`` workers and wait for them; returns the exit status for the shell."""
    if settings.redis_url is None:
        raise ConfigError(
            "--workers needs REDIS_URL: the processes share their rooms through Redis"
        )
    if settings.uses_embedded_db:
        raise ConfigError("--workers needs MONGODB_URI: the embedded database lives in one process")
    if "polling" in settings.socketio_transports:
        log.info("--workers: Socket.IO transports set to websocket (polling needs sticky sessions)")
        settings = settings.model_copy(update={"socketio_transports": ("websocket",)})
    try:
        holder = _reserve_port(settings.host, settings.port)
    except OSError as error:  # in use, not an address of this machine, unknown name
        raise cannot_listen(settings, error) from None
    settings = settings.model_copy(update={"port": holder.getsockname()[1]})
    parent = os.getpid()
    children: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # a worker: serve, then leave without running the parent's code
            _stop_with_parent(parent)
            holder.close()
            status = 0
            try:
                sockets = tornado.netutil.bind_sockets(
                    settings.port, settings.host, reuse_port=True
                )
                run(settings, make_app, sockets)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                status = 1
            finally:
                logging.shutdown()
                os._exit(status)
        children.add(pid)

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    holder.close()  # the workers hold the port now
    worst = 0
    while children:
        pid, status = os.wait()
        children.discard(pid)
        worst = max(worst, os.waitstatus_to_exitcode(status) != 0)
    return int(worst)
