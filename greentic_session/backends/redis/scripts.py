"""The Lua scripts, loaded once from package data (`lua/*.lua`), how they are named, and how
each is called: one argument builder per script (`*_call`) returns its KEYS and ARGV, in the
order its header in lua/ lists them. What each answers is read in `replies`.

A script argument holds '' for "none": a missing team or user (`_owner`, `_lookup`), an option
that is off, the index prefixes of a key whose indexes live in another cluster slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from typing import NamedTuple

from ...fence import Scope, UserSlot, wait_owners
from ...sealing import Sealer
from .keys import RedisKeys

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
    "SEALED_NO_OWNERS",
    "SEAL_MARK",
    "SINGLE_NODE",
    "TOUCH",
    "UPDATE",
    "Call",
    "Script",
    "Scripts",
    "clear_pointer_call",
    "clear_wait_call",
    "create_call",
    "create_for_user_call",
    "find_call",
    "find_wait_call",
    "list_waits_call",
    "load_script",
    "refresh_pointer_call",
    "register_wait_call",
    "remove_call",
    "sealed_tail",
    "touch_call",
    "update_call",
    "wait_tail",
]


Arg = str | bytes | int

_SEAL_LUA = resources.files(__package__).joinpath("lua", "seal.lua").read_text(encoding="utf-8")

# The last argument of a sealing store's every call (seal.lua): no argument a script takes is it.
SEAL_MARK = b"\xc5greentic-sealed-v1"

# A sealing store's tail for a call that checks no owner: it says only that the store seals.
SEALED_NO_OWNERS: tuple[Arg, ...] = (0, SEAL_MARK)


class Script(NamedTuple):
    source: bytes
    sha: str


def load_script(*names: str, cluster: bool = False) -> Script:
    """A script from package data files, concatenated (shared Lua functions come first), led
    by the layout flag owner.lua reads (`CLUSTER_TAGS`, keys.py's cluster hash tags) and by
    seal.lua, which takes a sealing store's tail (`sealed_tail`) off ARGV."""
    lua = resources.files(__package__).joinpath("lua")
    parts = [f"local CLUSTER_TAGS = {'true' if cluster else 'false'}", _SEAL_LUA]
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


# -- calling them ---------------------------------------------------------------------------------
# The builders of the common calls (update, find, remove, create) build flat tuples with no
# helper calls: they run on every call, and each Python call costs ~0.1 us here.

Call = tuple[tuple[str, ...], tuple[Arg, ...]]
"""A script call's (KEYS, ARGV)."""

# The expiry options as scripts take them (expiry.lua): (idle ms, lifetime ms), '' when off.
Ttl = tuple[str, str]

# The index prefixes of a key whose indexes live in another cluster slot (`split`): none.
_NO_INDEXES = ("", "", "")


def sealed_tail(
    sealer: Sealer, owners: Iterable[tuple[Scope, str, str]], *, erasing: bool = False
) -> tuple[Arg, ...]:
    """A sealing store's ARGV tail (seal.lua) for a call that checks `owners`: each as (owner,
    verdict, pointer suffix), sent as its digest under every key id the store reads (`erasing`:
    and unkeyed, `Sealer.erase_digests`)."""
    args: list[Arg] = []
    digests_of = sealer.erase_digests if erasing else sealer.owner_digests
    for owner, verdict, suffix in owners:
        for kid, digest in digests_of(owner).items():
            args += (kid, digest, verdict, suffix)
    return (*args, len(args) // 4, SEAL_MARK)


def wait_tail(sealer: Sealer, keys: RedisKeys, slot: UserSlot) -> tuple[Arg, ...]:
    """`sealed_tail` of a wait lookup at `slot`: the owners it may see (`fence.wait_owners`)."""
    suffix = keys.slot_suffix(slot)
    owners = wait_owners(slot)
    return sealed_tail(
        sealer,
        ((owner, verdict, "" if owner.user is None else suffix) for owner, verdict in owners),
    )


def _owner(owner: Scope) -> tuple[str, str, str, str]:
    """An owner as scripts take it (ARGV[1..4]): env, tenant_id, team, user; '' for none."""
    return owner.env, owner.tenant_id, owner.team or "", owner.user or ""


def _lookup(keys: RedisKeys, slot: UserSlot) -> tuple[str, str, str, str, str]:
    """The wait scripts' ARGV[1..5]: the blob key prefix and the lookup's env, tenant_id, team
    ('' for none) and user (waits.lua's `wait_verdict`)."""
    return keys.session_prefix, slot.env, slot.tenant_id, slot.team or "", slot.user


def create_call(
    keys: RedisKeys,
    key: str,
    blob: bytes,
    slot: UserSlot | None,
    ttl: Ttl,
    *,
    userless: bool,
    split: bool,
) -> Call:
    """create.lua: the session `key` of `slot`'s user (None: no pointer); with `split` its
    pointer, in another cluster slot, is written in a second step (split.py)."""
    suffix = "" if slot is None else keys.slot_suffix(slot)
    args = (blob, key, suffix, ttl[0], ttl[1], "1" if userless else "0")
    if slot is None or split:
        return (keys.session(key), keys.meta(key)), args
    return (keys.session(key), keys.meta(key), keys.user(slot)), args


def create_for_user_call(
    keys: RedisKeys,
    slot: UserSlot,
    key: str,
    blob: bytes,
    ttl: Ttl,
    *,
    seen: str,
    foreign: bool,
    userless: bool,
) -> Call:
    """create_for_user.lua: `slot`'s new session `key`, unless the pointer changed from `seen`
    (the key a lookup found, '' for none; `foreign` when that session was not the user's)."""
    args: tuple[Arg, ...] = (
        *(seen, "1" if foreign else "0", blob, key, keys.slot_suffix(slot), *ttl),
        *(keys.session_prefix, "1" if userless else "0"),
    )
    if keys.cluster:
        args = (*args, keys.tag(slot))  # ARGV[10]
    return (keys.user(slot), keys.session(key), keys.meta(key)), args


def find_call(keys: RedisKeys, slot: UserSlot) -> Call:
    """find.lua: follow `slot`'s pointer (KEYS[1]) to its blob."""
    if keys.cluster:
        return (keys.user(slot),), (keys.session_prefix, keys.tag(slot))
    return (keys.user(slot),), (keys.session_prefix,)


def clear_pointer_call(pointer: str, key: str) -> Call:
    """clear_pointer.lua: delete `pointer` if it still names `key`."""
    return (pointer,), (key,)


def refresh_pointer_call(pointer: str, key: str, ttl_ms: int) -> Call:
    """refresh_pointer.lua: give `pointer` a TTL if it still names `key`."""
    return (pointer,), (key, ttl_ms)


def update_call(
    keys: RedisKeys,
    key: str,
    owner: Scope,
    blob: bytes,
    owner_prefix: int,
    *,
    expected: str | bytes,
    compare: str,
    ttl: Ttl,
    pointer_suffix: str,
    split: bool,
) -> Call:
    """update.lua: write `blob` (whose first `owner_prefix` bytes hold its owner fields) over
    `key` while `owner` owns it and it is still `expected` (a revision with `compare` 'sha1',
    '' for no condition; the very bytes read with 'bytes'). `pointer_suffix` is the owner's
    pointer (`RedisKeys.slot_suffix`) to refresh under expiry options, or to record in a
    sealing store ('' for none); `split` as in `create_call`."""
    user_prefix, scope_prefix, set_prefix = _NO_INDEXES if split else keys.index_prefixes
    env, tenant_id, team, user = _owner(owner)
    return (keys.session(key), keys.meta(key), keys.wait_hint(key)), (
        env,  # ARGV[1..4]: the owner
        tenant_id,
        team,
        user,
        blob,  # ARGV[5]
        owner_prefix,  # ARGV[6]
        expected,  # ARGV[7]
        ttl[0],  # ARGV[8]: idle ms
        ttl[1],  # ARGV[9]: lifetime ms
        user_prefix,  # ARGV[10]
        key,  # ARGV[11]
        pointer_suffix,  # ARGV[12]
        compare,  # ARGV[13]
        scope_prefix,  # ARGV[14]
        set_prefix,  # ARGV[15]
    )


def touch_call(keys: RedisKeys, key: str, ttl: Ttl, split: bool) -> Call:
    """touch.lua: restart `key`'s idle clock; `split` as in `create_call`."""
    user_prefix, scope_prefix, set_prefix = _NO_INDEXES if split else keys.index_prefixes
    own = (keys.session(key), keys.meta(key), keys.wait_hint(key))
    return own, (ttl[0], ttl[1], user_prefix, key, scope_prefix, set_prefix)


def remove_call(keys: RedisKeys, key: str, split: bool) -> Call:
    """remove.lua: delete `key` and its indexes (its deadline's too: on a single node the index
    member, KEYS[5]); `split` as in `create_call`."""
    user_prefix, scope_prefix, set_prefix = _NO_INDEXES if split else keys.index_prefixes
    args = (key, user_prefix, scope_prefix, set_prefix)
    if keys.cluster:
        return (keys.session(key), keys.meta(key), keys.wait_hint(key), keys.due(key)), args
    own = (keys.session(key), keys.meta(key), keys.wait_hint(key), keys.due(key), keys.due_index())
    return own, args


def register_wait_call(
    keys: RedisKeys,
    key: str,
    owner: Scope,
    blob: bytes,
    slot: UserSlot,
    *,
    scope_hash: str,
    wait_ttl_ms: int | None,
    lifetime_ms: str,
    deadline: tuple[int, str, bytes] | None = None,
) -> Call:
    """register_wait.lua: `blob` under `key` as `slot`'s wait for the scope `scope_hash`, for
    `wait_ttl_ms` (None: no expiry of its own) within the store's lifetime ms; `deadline` is
    (ms from now, registration token, scope JSON) of its deadline (due.py), None for none."""
    suffix = keys.slot_suffix(slot)
    # The hint's value (keys.py): the wait's TTL ms ('' for none) and its scope suffix.
    wait_ttl = "" if wait_ttl_ms is None else str(wait_ttl_ms)
    hint = f"{wait_ttl}:{suffix}:{scope_hash}"
    # On a single node the deadline index is KEYS[7]; a cluster indexes in a second step.
    index = () if keys.cluster else (keys.due_index(),)
    return (
        *(keys.session(key), keys.meta(key), keys.wait_hint(key)),
        *(keys.wait_scope(slot, scope_hash), keys.wait_user(slot), keys.due(key), *index),
    ), (
        *(*_owner(owner), blob, key),
        *(lifetime_ms, hint, suffix, keys.session_prefix),
        *(keys.wait_hint_prefix, keys.wait_scope_prefix, keys.user_prefix, keys.due_prefix),
        *(("", "", b"") if deadline is None else deadline),
    )


def find_wait_call(keys: RedisKeys, slot: UserSlot, scope_hash: str) -> Call:
    """find_wait.lua: `slot`'s live wait for the scope `scope_hash`."""
    return (keys.wait_scope(slot, scope_hash), keys.wait_user(slot)), (
        *_lookup(keys, slot),
        *(keys.wait_hint_prefix, f"{keys.slot_suffix(slot)}:{scope_hash}"),
    )


def list_waits_call(keys: RedisKeys, slot: UserSlot) -> Call:
    """list_waits.lua: `slot`'s live waits."""
    return (keys.wait_user(slot),), (
        *_lookup(keys, slot),
        *(keys.wait_hint_prefix, keys.slot_suffix(slot)),
    )


def clear_wait_call(keys: RedisKeys, slot: UserSlot, scope_hash: str) -> Call:
    """clear_wait.lua: end `slot`'s wait for the scope `scope_hash` (and its deadline: on a
    single node the index member, KEYS[3])."""
    index = () if keys.cluster else (keys.due_index(),)
    return (keys.wait_scope(slot, scope_hash), keys.wait_user(slot), *index), (
        *_lookup(keys, slot),
        *(keys.wait_hint_prefix, f"{keys.slot_suffix(slot)}:{scope_hash}"),
        *(keys.meta_prefix, keys.user_prefix, keys.wait_scope_prefix, keys.due_prefix),
    )
