"""Action modules: ``<entity>.py`` holds the hooks that run around that entity's writes.

Any of ``before_insert``, ``after_insert``, ``before_update``, ``after_update``,
``before_delete``, ``after_delete`` (``async def hook(ctx, doc)``). ``ctx.registry``
is the service locator (``ctx.registry['transomMsgClient']``), ``ctx.services`` the
same services typed, ``ctx.user`` the caller, ``ctx.db`` the database. Raising an
error of ``transom_socketio.models.errors`` (``Invalid``, ``Forbidden``...) in a
``before_`` hook refuses the write with its status; see ``message.py``.
"""
