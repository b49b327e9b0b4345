"""The library versions the fast path was tested with, and the check against them.

Everything in ``realtime/accel/`` reads or replaces private parts of these
libraries, which any release may change. It turns itself on only when the
installed versions are exactly these; any other version runs stock
python-socketio (after one WARNING), so a security release of a library installs
without a template change. Raise a version here only after the generated suite
passes on it with FAST_FANOUT=true.
"""

from __future__ import annotations

from importlib import metadata

TESTED: dict[str, str] = {
    "python-socketio": "5.18.1",
    "python-engineio": "4.15.1",
    "tornado": "6.6.1",
}


def installed() -> dict[str, str]:
    """The installed version of each library of ``TESTED``."""
    return {name: metadata.version(name) for name in TESTED}


def untested() -> dict[str, str]:
    """The libraries whose installed version is not the tested one: name -> version."""
    return {name: found for name, found in installed().items() if found != TESTED[name]}
