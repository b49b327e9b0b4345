"""``python -m example_app``: serve the app (``--workers N``: N processes sharing
the port, and the Socket.IO rooms through Redis).

Configuration comes from the environment and ``.env`` (see ``.env.example``).
A bad setting stops start-up with one line naming the variable.
"""

from __future__ import annotations

import sys

from transom_socketio.cli import main

from .app import make_app
from .settings import load_settings

if __name__ == "__main__":
    sys.exit(main("python -m example_app", load_settings, make_app))
