"""``python -m {{ cookiecutter.project_slug }}``: serve the app.

Configuration comes from the environment and ``.env`` (see ``.env.example``).
A bad setting stops start-up with one line naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pymongo.errors import PyMongoError

from .config import ConfigError, load_settings
from .logs import configure_logging
from .server import run
{%- if cookiecutter.message_queue == "redis" %}
from .workers import run_workers
{%- endif %}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.project_slug }}",
        description="Serve the app. Settings come from the environment and .env.",
    )
{%- if cookiecutter.message_queue == "redis" %}
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port and, through Redis, the Socket.IO rooms (default 1)",
    )
{%- endif %}
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    {% if cookiecutter.message_queue == "redis" %}args = {% endif %}parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
{%- if cookiecutter.message_queue == "redis" %}
        if args.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if args.workers > 1:
            return run_workers(settings, args.workers)
{%- endif %}
        run(settings)
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


if __name__ == "__main__":
    sys.exit(main())
