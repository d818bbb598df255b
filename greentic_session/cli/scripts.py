"""The CLI's Lua scripts, loaded once from package data (`lua/*.lua`, each described there).

The walk reads each SCAN batch with `FETCH`. The write scripts: compare-and-delete
(`DELETE_IF_VALUE`, `DELETE_ORPHAN`, `REMOVE_ORPHAN_MEMBER`, `DELETE_IF_TYPE`), where each
deletion first checks the key is still what the walk saw, so a repair or purge never deletes
what a live writer changed meanwhile; `IMPORT`, one call per batch of records; and
copy-to-cluster's `COPY_SESSION` and `COPY_POINTER`, each writing keys of one cluster slot, all
declared in KEYS, and never overwriting one (`copy.py`); `RESEAL`, reseal's compare-and-set
of one blob on the exact bytes read (`reseal.py`).
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "COPY_POINTER",
    "COPY_SESSION",
    "DELETE_IF_TYPE",
    "DELETE_IF_VALUE",
    "DELETE_ORPHAN",
    "FETCH",
    "IMPORT",
    "REMOVE_ORPHAN_MEMBER",
    "RESEAL",
    "load_lua",
]


def load_lua(name: str) -> str:
    """The script in `lua/{name}`, without its leading comment lines: EVAL sends a script's
    whole body with every call, so its description stays in the file."""
    text = resources.files(__package__).joinpath("lua").joinpath(name).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    body = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    return "".join(lines[body:])


FETCH = load_lua("fetch.lua")
DELETE_IF_VALUE = load_lua("delete_if_value.lua")
DELETE_ORPHAN = load_lua("delete_orphan.lua")
REMOVE_ORPHAN_MEMBER = load_lua("remove_orphan_member.lua")
DELETE_IF_TYPE = load_lua("delete_if_type.lua")
IMPORT = load_lua("import.lua")
COPY_SESSION = load_lua("copy_session.lua")
COPY_POINTER = load_lua("copy_pointer.lua")
RESEAL = load_lua("reseal.lua")
