"""The public API: README.md's table and each module's ``__all__`` say the same."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

README = Path(__file__).resolve().parents[1] / "README.md"


def documented() -> dict[str, set[str]]:
    """Each module of the table, with the backticked names of its row."""
    text = README.read_text()
    table = text[text.index("## Public API") :].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(transom_socketio[\w.]*)` \| (.*) \|$", table, re.M)
    return {module: set(re.findall(r"`([A-Za-z_]\w*)", names)) for module, names in rows}


def test_each_documented_module_exports_exactly_its_documented_names() -> None:
    table = documented()
    assert len(table) > 20
    for module_name, names in table.items():
        module = importlib.import_module(module_name)
        exported = set(getattr(module, "__all__", ()))
        assert exported, f"{module_name} declares no __all__"
        # A row also names attributes and methods (``Services.create``): its module-level
        # names are those the module defines, and they are exactly what it exports.
        at_module_level = {
            name
            for name in names
            if hasattr(module, name) and not isinstance(getattr(module, name), ModuleType)
        }
        assert exported == at_module_level, module_name
        assert not any(name.startswith("_") for name in exported), module_name
