"""transom-socketio: the engine under transom-socketio-template apps.

A Tornado REST API with local accounts (JWTs, one-time socket tokens from a MongoDB
nonce collection), python-socketio mounted in Tornado, a message client that model
hooks reach as ``registry['transomMsgClient']``, recovery and presence, in one process
or several sharing Redis. An app composes it (``transom_socketio.app``); the modules a
generated app imports are the public API, listed in README.md. Names with a leading
underscore, and ``transom_socketio.realtime.accel`` (the fenced fast path), are not.
"""

__version__ = "0.3.12"
