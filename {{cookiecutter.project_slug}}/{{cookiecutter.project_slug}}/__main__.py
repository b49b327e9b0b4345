"""``python -m {{ cookiecutter.project_slug }}``: serve the app.

Configuration comes from the environment and ``.env`` (see ``.env.example``).
A bad setting stops start-up with one line naming the variable.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pymongo.errors import PyMongoError

from .config import ConfigError, load_settings
from .logs import configure_logging
from .server import serve


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
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
