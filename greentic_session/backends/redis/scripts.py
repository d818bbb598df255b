"""The Lua scripts, loaded once from package data (`lua/*.lua`), and how they are named."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import NamedTuple

__all__ = [
    "CLEAR_POINTER",
    "CLEAR_WAIT",
    "CREATE",
    "CREATE_FOR_USER",
    "FIND",
    "FIND_WAIT",
    "LIST_WAITS",
    "REGISTER_WAIT",
    "REMOVE",
    "TOUCH",
    "UPDATE",
    "Script",
    "load_script",
]


class Script(NamedTuple):
    source: bytes
    sha: str


def load_script(*names: str) -> Script:
    """A script from package data files, concatenated (shared Lua functions come first)."""
    lua = resources.files(__package__).joinpath("lua")
    source = "\n".join(lua.joinpath(name).read_text(encoding="utf-8") for name in names).encode()
    return Script(source, hashlib.sha1(source, usedforsecurity=False).hexdigest())


# get.lua, owner.lua, expiry.lua, wait_keys.lua and waits.lua hold functions shared by several
# scripts: they come first, in that order (each may use the ones before it). A script loads only
# the ones it uses: Lua defines every function of a script on each call.
UPDATE = load_script("get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "update.lua")
REMOVE = load_script("get.lua", "owner.lua", "wait_keys.lua", "remove.lua")
TOUCH = load_script("get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "touch.lua")
REGISTER_WAIT = load_script(
    "get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "waits.lua", "register_wait.lua"
)
_WAIT_LOOKUP = ("get.lua", "owner.lua", "wait_keys.lua", "waits.lua")
FIND_WAIT = load_script(*_WAIT_LOOKUP, "find_wait.lua")
LIST_WAITS = load_script(*_WAIT_LOOKUP, "list_waits.lua")
CLEAR_WAIT = load_script(*_WAIT_LOOKUP, "clear_wait.lua")
CREATE = load_script("get.lua", "expiry.lua", "create.lua")
CREATE_FOR_USER = load_script("get.lua", "expiry.lua", "create_for_user.lua")
FIND = load_script("get.lua", "find.lua")
CLEAR_POINTER = load_script("clear_pointer.lua")
