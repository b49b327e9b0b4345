"""The command line of an app (``python -m <app>``): serve it, with ``--workers N``
processes sharing one port through Redis.

A bad setting stops start-up with one line naming the variable (exit status 2); a
database that does not answer, with one line naming the error (status 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pymongo.errors import PyMongoError

from .config import AppSettings, ConfigError
from .logs import configure_logging
from .server import MakeApp, run
from .workers import run_workers

__all__ = ["main"]


def parse_args(prog: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the app. Settings come from the environment and .env.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port and, through Redis (REDIS_URL), the Socket.IO "
        "rooms (default 1)",
    )
    return parser.parse_args(list(argv))


def main(
    prog: str,
    load_settings: Callable[[], AppSettings],
    make_app: MakeApp[AppSettings],
    argv: Sequence[str] | None = None,
) -> int:
    """Serve the app that ``make_app`` builds from ``load_settings()``; the exit status."""
    args = parse_args(prog, sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        if args.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if args.workers > 1:
            return run_workers(settings, args.workers, make_app)
        run(settings, make_app)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PyMongoError as error:
        # The driver's message names hosts, never credentials; keep its first clause.
        reason = str(error).split(",")[0]
        logging.getLogger(__name__).error(
            "cannot reach MongoDB (%s): %s", type(error).__name__, reason
        )
        return 1
    return 0
