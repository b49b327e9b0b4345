"""``python -m transom_socketio.docs security`` (or ``faults``): print the notes."""

from . import main

raise SystemExit(main())
