"""The command line of an app (``python -m <app>``): serve it, with ``--workers N``
processes sharing one port through Redis; or ``createadmin --email E --username U``:
create an administrator (group ``admin``, verified), the password asked without echo
or taken from ADMIN_PASSWORD.

A bad setting stops start-up with one line naming the variable (exit status 2); a
database that does not answer, with one line naming the error (status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pymongo.errors import PyMongoError

from . import db
from .auth.admin import CreateAdminError
from .auth.shapes import Signup
from .config import AppSettings, ConfigError
from .embedded_db import client_uri, start_embedded_database
from .logs import configure_logging
from .server import MakeApp, run
from .services import Services
from .shapes import explain
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


def parse_createadmin_args(prog: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"{prog} createadmin",
        description="Create an administrator: a verified account in the group admin. The "
        "password is asked without echo, or read from ADMIN_PASSWORD when it is set.",
    )
    parser.add_argument("--email", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--display-name", default=None)
    return parser.parse_args(list(argv))


def admin_password() -> str:
    """ADMIN_PASSWORD, else asked twice on the terminal without echo."""
    given = os.environ.get("ADMIN_PASSWORD")
    if given:
        return given
    try:
        with warnings.catch_warnings():
            # Without a terminal getpass reads stdin, warning that it cannot hide the echo.
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password (again): ")
    except EOFError:
        print(file=sys.stderr)  # the prompt's line, which getpass leaves open at EOF
        raise CreateAdminError(
            "no password given: type it at the prompt or set ADMIN_PASSWORD"
        ) from None
    if again != password:
        raise CreateAdminError("the two passwords differ")
    return password


async def create_admin(
    settings: AppSettings, make_app: MakeApp[AppSettings], fields: dict[str, Any]
) -> dict[str, Any]:
    """Create the administrator in the app's database (the embedded one under DATA_DIR
    without MONGODB_URI: the app must not be running on it)."""
    try:
        body = Signup(**fields)
    except ValidationError as error:
        message, field = explain(error)
        shown = message if field is None or message.startswith(field) else f"{field}: {message}"
        raise CreateAdminError(shown) from None
    embedded = None
    if settings.uses_embedded_db:
        embedded = start_embedded_database(settings.data_dir / "db")
        settings = settings.model_copy(update={"mongodb_uri": client_uri(embedded)})
    try:
        app = make_app(settings)
        services: Services = app.settings["services"]
        try:
            await db.ensure_indexes(services.database, app.settings["indexes"])
            return await services.admin.create_admin(body)
        finally:
            services.passwords.close()
            await db.close(services.mongo_client)
    finally:
        if embedded is not None:
            embedded.stop()


def main(
    prog: str,
    load_settings: Callable[[], AppSettings],
    make_app: MakeApp[AppSettings],
    argv: Sequence[str] | None = None,
) -> int:
    """Serve the app that ``make_app`` builds from ``load_settings()``, or run one of
    its commands (``createadmin``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["createadmin"]:
        return createadmin_main(prog, load_settings, make_app, argv[1:])
    args = parse_args(prog, argv)
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


def createadmin_main(
    prog: str,
    load_settings: Callable[[], AppSettings],
    make_app: MakeApp[AppSettings],
    argv: Sequence[str],
) -> int:
    """``createadmin``: 0 once created; 1 with one line saying why not (2: a setting)."""
    args = parse_createadmin_args(prog, argv)
    try:
        settings = load_settings()
        configure_logging("WARNING", settings.log_format)
        fields = {
            "email": args.email,
            "username": args.username,
            "display_name": args.display_name,
            "password": admin_password(),
        }
        user = asyncio.run(create_admin(settings, make_app, fields))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CreateAdminError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except PyMongoError as error:
        print(f"error: cannot reach MongoDB ({type(error).__name__})", file=sys.stderr)
        return 1
    print(f"created administrator {user['username']} <{user['email']}> ({user['_id']})")
    return 0
