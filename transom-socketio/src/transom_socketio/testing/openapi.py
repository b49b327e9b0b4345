"""Checks of an app's OpenAPI document against what it serves, for its tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import tornado.web

from ..web.cors import methods_of
from ..web.openapi import UNDOCUMENTED_ROUTES, served_routes

__all__ = ["mismatches", "operations"]

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def template(pattern: str) -> str:
    """``/api/v1/db/message/([^/]+)$`` -> ``/api/v1/db/message/{}``."""
    return re.sub(r"\([^)]*\)", "{}", pattern.removesuffix("$")).replace("\\", "")


def documented(path: str) -> str:
    """``/api/v1/db/message/{id}`` -> ``/api/v1/db/message/{}``."""
    return re.sub(r"\{[^}/]+\}", "{}", path)


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> set[str]:
    """The HTTP methods a handler class defines (RequestHandler's own answer 405)."""
    return {method.lower() for method in methods_of(handler)}


def mismatches(app: tornado.web.Application, document: dict[str, Any]) -> list[str]:
    """Every disagreement between the routes of ``app`` and the paths of ``document``:
    an undocumented route, a documented path nothing serves, a method served but not
    documented or the other way round. Empty when they agree."""
    routes = {
        template(pattern): handler
        for pattern, handler, _ in served_routes(app.default_router)
        if pattern not in UNDOCUMENTED_ROUTES
    }
    paths = {documented(path): item for path, item in document["paths"].items()}
    problems = [f"undocumented route {route}" for route in sorted(set(routes) - set(paths))]
    problems += [f"documented path without a route {p}" for p in sorted(set(paths) - set(routes))]
    for route in sorted(set(routes) & set(paths)):
        served = implemented_methods(routes[route])
        described = {method for method in paths[route] if method in HTTP_METHODS}
        if served != described:
            problems.append(f"{route}: served {sorted(served)}, documented {sorted(described)}")
    return problems


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` of every operation the document describes."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation
