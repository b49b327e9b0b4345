"""The engine's own notes, for the release that is installed: ``security``
(SECURITY.md: what each credential gives an attacker, every limit, what is logged)
and ``faults`` (faults.md: what an app guarantees when its database, Redis or process
fails). ``python -m transom_socketio.docs security`` (or ``faults``) prints one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.resources import files
from typing import Final

__all__ = ["NOTES", "main", "read_notes"]

# Each name the command takes, and the file of this package it prints.
NOTES: Final = {"security": "SECURITY.md", "faults": "faults.md"}
USAGE: Final = f"usage: python -m transom_socketio.docs {{{','.join(NOTES)}}}"


def read_notes(name: str) -> str:
    """The text of the notes ``name`` (a key of ``NOTES``) of the installed engine."""
    if name not in NOTES:
        raise ValueError(f"no notes named {name!r}: one of {', '.join(NOTES)}")
    return files(__name__).joinpath(NOTES[name]).read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the notes named by the one argument; exit status 2, with the usage line on
    stderr, for anything else."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(args) != 1 or args[0] not in NOTES:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(read_notes(args[0]).encode("utf-8"))
        sys.stdout.flush()
    except BrokenPipeError:
        # Read by a pager or `head` that stopped early: nothing more to say. Point stdout
        # at devnull so that the interpreter's last flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
