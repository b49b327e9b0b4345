"""Testing an app built on transom-socketio: real clients (``clients``) and a pytest
plugin (``plugin``) that serves the app on a real database. Needs the ``testing`` extra."""
