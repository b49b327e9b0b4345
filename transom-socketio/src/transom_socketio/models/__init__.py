"""The data model's machinery: entities (``base``), their store, errors and action hooks.

An app's own ``models`` package lists its entities and their action modules.
"""
