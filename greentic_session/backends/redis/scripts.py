"""The Lua scripts, loaded once from package data (`lua/*.lua`), and how they are named."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import NamedTuple

__all__ = [
    "CLEAR_POINTER",
    "CLEAR_WAIT",
    "CLUSTER",
    "CREATE",
    "CREATE_FOR_USER",
    "FIND",
    "FIND_WAIT",
    "LIST_WAITS",
    "REGISTER_WAIT",
    "REMOVE",
    "SINGLE_NODE",
    "TOUCH",
    "UPDATE",
    "Script",
    "Scripts",
    "load_script",
]


class Script(NamedTuple):
    source: bytes
    sha: str


def load_script(*names: str, cluster: bool = False) -> Script:
    """A script from package data files, concatenated (shared Lua functions come first), led
    by the layout flag owner.lua reads (`CLUSTER_TAGS`, keys.py's cluster hash tags)."""
    lua = resources.files(__package__).joinpath("lua")
    parts = [f"local CLUSTER_TAGS = {'true' if cluster else 'false'}"]
    parts += [lua.joinpath(name).read_text(encoding="utf-8") for name in names]
    source = "\n".join(parts).encode()
    return Script(source, hashlib.sha1(source, usedforsecurity=False).hexdigest())


# get.lua, owner.lua, expiry.lua, wait_keys.lua and waits.lua hold functions shared by several
# scripts: they come first, in that order (each may use the ones before it). A script loads only
# the ones it uses: Lua defines every function of a script on each call.
_WAIT_LOOKUP = ("get.lua", "owner.lua", "wait_keys.lua", "waits.lua")
_FILES = {
    "UPDATE": ("get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "update.lua"),
    "REMOVE": ("get.lua", "owner.lua", "wait_keys.lua", "remove.lua"),
    "TOUCH": ("get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "touch.lua"),
    "REGISTER_WAIT": (
        *("get.lua", "owner.lua", "expiry.lua", "wait_keys.lua", "waits.lua"),
        "register_wait.lua",
    ),
    "FIND_WAIT": (*_WAIT_LOOKUP, "find_wait.lua"),
    "LIST_WAITS": (*_WAIT_LOOKUP, "list_waits.lua"),
    "CLEAR_WAIT": (*_WAIT_LOOKUP, "clear_wait.lua"),
    "CREATE": ("get.lua", "expiry.lua", "create.lua"),
    "CREATE_FOR_USER": ("get.lua", "expiry.lua", "create_for_user.lua"),
    "FIND": ("get.lua", "find.lua"),
    "CLEAR_POINTER": ("clear_pointer.lua",),
    "REFRESH_POINTER": ("refresh_pointer.lua",),
}


class Scripts(NamedTuple):
    """Every script, for one layout (single node or cluster)."""

    UPDATE: Script
    REMOVE: Script
    TOUCH: Script
    REGISTER_WAIT: Script
    FIND_WAIT: Script
    LIST_WAITS: Script
    CLEAR_WAIT: Script
    CREATE: Script
    CREATE_FOR_USER: Script
    FIND: Script
    CLEAR_POINTER: Script
    REFRESH_POINTER: Script

    @classmethod
    def load(cls, *, cluster: bool) -> Scripts:
        return cls(**{name: load_script(*files, cluster=cluster) for name, files in _FILES.items()})


SINGLE_NODE = Scripts.load(cluster=False)
CLUSTER = Scripts.load(cluster=True)

# The single-node scripts by name, for the CLI and the tests.
UPDATE, REMOVE, TOUCH = SINGLE_NODE.UPDATE, SINGLE_NODE.REMOVE, SINGLE_NODE.TOUCH
REGISTER_WAIT, FIND_WAIT = SINGLE_NODE.REGISTER_WAIT, SINGLE_NODE.FIND_WAIT
LIST_WAITS, CLEAR_WAIT = SINGLE_NODE.LIST_WAITS, SINGLE_NODE.CLEAR_WAIT
CREATE, CREATE_FOR_USER = SINGLE_NODE.CREATE, SINGLE_NODE.CREATE_FOR_USER
FIND, CLEAR_POINTER = SINGLE_NODE.FIND, SINGLE_NODE.CLEAR_POINTER
