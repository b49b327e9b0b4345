"""Pages and their static files, served with a strict Content-Security-Policy."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import tornado.web

from .. import logs
from .errors import BodilessHandler

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["PageHandler"]

# The page loads only its own scripts and styles, and talks only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class PageHandler(BodilessHandler):
    """A page of the app (HTML rendered from its templates), with the security headers
    above; the app's pages subclass it and define ``get``."""

    def initialize(self) -> None:
        self.request_id = logs.start_request(self.request)
        self.services: Services = self.application.settings["services"]

    def set_default_headers(self) -> None:
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)


# A file name holds no control character (a NUL makes os.path raise ValueError) and
# no backslash; anything else is looked up and, if absent, answered 404.
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


class StaticFiles(BodilessHandler, tornado.web.StaticFileHandler):
    """The page's scripts and styles, with the page's security headers."""

    def set_default_headers(self) -> None:
        for name, value in PAGE_HEADERS.items():
            self.set_header(name, value)

    def parse_url_path(self, url_path: str) -> str:
        if _UNSAFE_NAME.search(url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)
