"""`erase_user` on Redis: find the user's sessions by walking the namespace, delete each with its
indexes, then the user's own keys.

No index lists every session of a user (the user pointer names only the newest, a wait SET only
waits), so the walk SCANs `{ns}:session:*` (never KEYS) on the node, or on every master of a
cluster, `SCAN_COUNT` names per call, and runs one script per blob found (lua/erase_check.lua in
front of lua/remove.lua): it reads the owner (owner.lua's rule) and, only when it is the erased
user, deletes the blob, meta key, wait hint, deadline record (and on a single node its index
member) and every pointer and wait SET member that still names it, atomically per session. Cost:
O(keys in the namespace) SCAN work plus one script per session blob of the namespace, whoever
owns it. On a cluster a deadline index member of an erased wait stays until a claim meets it and
prunes it (it names the session key and a random token, not the user).

Then the user's own keys go: the user pointer, the wait SET and every scope pointer under the
user's key suffix. A team literally named "-" shares these keys with "no team" (Rust's layout,
see fence.py): erasing one erases the other's indexes too (its sessions stay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ...errors import InternalError
from ...fence import Scope, UserSlot
from ...sealing import Sealer
from .caller import Caller
from .cluster import ClusterCaller
from .keys import RedisKeys
from .scripts import load_script, remove_call, sealed_tail

__all__ = ["SCAN_COUNT", "erase_user"]

SCAN_COUNT = 500
_UNJUDGED = -5  # erase_check.lua: a sealed blob under a key id the tail has no digest for

_ERASE = {
    cluster: load_script(
        "get.lua", "owner.lua", "wait_keys.lua", "erase_check.lua", "remove.lua", cluster=cluster
    )
    for cluster in (False, True)
}


async def _nodes(caller: Caller) -> list[Any]:
    """The callers to SCAN: the one node, or every master of a cluster."""
    if isinstance(caller, ClusterCaller):
        return await caller.masters()
    return [caller]


async def _scan(node: Any, match: str) -> list[list[str]]:
    """Every name matching `match` on `node`, in SCAN batches (a name may repeat)."""
    batches: list[list[str]] = []
    cursor: bytes | str | int = 0
    while True:
        cursor, names = await node.execute("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT)
        batches.append([n.decode() if isinstance(n, bytes) else str(n) for n in names])
        if int(cursor) == 0:
            return batches


def _erased(reply: object, split: bool) -> bool:
    """remove.lua's reply for a removed session (1, or with split indexes the pointer suffix)."""
    return reply == 1 or (split and isinstance(reply, bytes))


async def erase_user(caller: Caller, keys: RedisKeys, slot: UserSlot, sealer: Sealer) -> int:
    """Erase `slot`'s user (see the module docstring); return how many sessions went. `sealer`
    (the store's, the identity without options) gives the digests the script compares with a
    sealed blob's (seal.lua): under every key id it reads, and unkeyed. A sealed blob it cannot
    judge (under a key id its ring lacks) is left, and once the walk is done `InternalError`
    says how many and under which key ids: an erasure must not look complete when it is not."""
    script = _ERASE[keys.cluster]
    owner = (slot.env, slot.tenant_id, slot.team or "", slot.user)
    erased_owner = Scope(slot.env, slot.tenant_id, slot.team, slot.user)
    tail = sealed_tail(sealer, ((erased_owner, "owner", keys.slot_suffix(slot)),), erasing=True)
    seen: set[str] = set()
    erased = 0
    unjudged: list[str] = []

    async def erase_one(key: str) -> bool:
        split = keys.local_only(key)
        call_keys, args = remove_call(keys, key, split)
        reply = await caller.eval(script, call_keys, (*args, *owner, *tail), write=True, key=key)
        if isinstance(reply, list) and reply[:1] == [_UNJUDGED]:
            unjudged.append(reply[1].decode("ascii", "replace") if len(reply) > 1 else "")
            return False
        return _erased(reply, split)

    for node in await _nodes(caller):
        for batch in await _scan(node, keys.session_prefix + "*"):
            fresh = [_session_key(keys, name) for name in batch if name not in seen]
            seen.update(batch)
            results = await asyncio.gather(*(erase_one(key) for key in fresh))
            erased += sum(results)
    await _drop_user_keys(caller, keys, slot)
    if unjudged:
        ids = ", ".join(
            repr(kid) if kid else "(a malformed header)" for kid in sorted(set(unjudged))
        )
        raise InternalError(
            f"erase_user erased {erased} session(s) but could not judge {len(unjudged)} sealed "
            f"session(s) of the namespace, sealed under key id(s) {ids} that this store's ring "
            "lacks: erase again with a store holding those keys"
        )
    return erased


def _session_key(keys: RedisKeys, name: str) -> str:
    """The session key of blob key `name` (on a cluster, without the tag `_own` put in front
    of an untagged caller key)."""
    own = name[len(keys.session_prefix) :]
    if keys.cluster and len(own) > 10 and keys.session(own[10:]) == name:
        return own[10:]
    return own


async def _drop_user_keys(caller: Caller, keys: RedisKeys, slot: UserSlot) -> None:
    """Delete the user pointer, wait SET and scope pointers of `slot`."""
    names: list[str] = [keys.user(slot), keys.wait_user(slot)]
    match = keys.wait_scope_prefix + _glob_escape(keys.slot_suffix(slot)) + ":*"
    for node in await _nodes(caller):
        names += [name for batch in await _scan(node, match) for name in batch]
    await _delete(caller, dict.fromkeys(names))


async def _delete(caller: Caller, names: Iterable[str]) -> None:
    # One DEL per key: on a cluster the keys may live in different slots.
    await asyncio.gather(*(caller.execute("DEL", name, write=True) for name in names))


def _glob_escape(text: str) -> str:
    """`text` matched literally by SCAN's MATCH (a cluster tag's braces are not glob syntax, but
    the escape keeps any future character safe)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
