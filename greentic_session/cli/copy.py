"""`copy-to-cluster`: the sessions of a single Redis, copied into a Redis Cluster's key layout.

The source is walked as `export` walks it (the references first, then the blobs); each session
is then written to the cluster (`keys.RedisKeys(namespace, cluster=True)`), never over a key
that exists there:

- its blob (the exact bytes), meta key and wait hint under its own key, with the PTTLs read: one
  script on the master of the key's slot, all or nothing (lua/copy_session.lua);
- the meta value and the hint carry the pointer suffix, which the cluster layout leads with the
  user's hash tag: rewritten;
- a plain session keeps its key (untagged on the cluster: its calls take two ordered steps
  there, see docs/guides/redis-cluster.md); its user pointer, if the source pointer names it, is
  a second step in the pointer's own slot, after the blob (lua/copy_pointer.lua);
- a wait gets the key `session_key_for` builds (its user's tag, then the key), since on a cluster
  a wait's keys must share one slot: blob, meta, hint, scope pointer, wait SET and user pointer
  are then all one script.

A session whose blob is already in the cluster with the same bytes counts as copied before (a
second run, or one after an interruption, finishes the pointers and changes nothing else); with
other bytes it is a conflict and nothing of it is written.

A sealed blob (sealing.py) is bound to its session key and namespace (the AES-GCM associated data
and the owner digest). It is copied byte for byte while both stay; a re-keyed wait, or any
sealed blob when `--to-namespace` differs, is resealed for its new key and namespace with the
run's settings (keys, compression), which needs the blob opened: without the keys that opens
it, such a session is skipped and named. A resealed blob never has the same bytes twice (a new
nonce), so a blob already in the cluster that opens to the same JSON counts as copied before.

The writes go through the cluster store's own router (its `caller`, a `ClusterCaller`) rather
than redis-py's `RedisCluster`: it follows MOVED and ASK, never re-sends a write whose reply was
lost (redis-py's cluster client retries by default), and maps every failure to the store's typed
errors.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..backends.redis.caller import Caller
from ..backends.redis.keys import RedisKeys, is_tagged, key_tag
from ..backends.redis.scripts import Script
from ..backends.redis.store import RedisSessionStore
from ..errors import InternalError
from ..fence import UserSlot, scope_of
from ..schema import SessionData
from ..sealing import MAGIC, Sealer
from . import scripts
from .context import Context, ExitCode, Report, table
from .layout import Kind, Layout, Parsed, parse_slot
from .records import MetaRecord, RefRecord
from .transfer import index_references

__all__ = ["Copy", "Skip", "Source", "copy_to_cluster", "plan"]

# Sessions in flight at once (the cluster store batches concurrent calls per master).
CONCURRENCY = 64


def _script(source: str) -> Script:
    data = source.encode()
    return Script(data, hashlib.sha1(data, usedforsecurity=False).hexdigest())


COPY_SESSION = _script(scripts.COPY_SESSION)
COPY_POINTER = _script(scripts.COPY_POINTER)


class Skip(Exception):
    """A session that cannot be copied as it is; `reason` names no user id."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Step:
    op: str  # B, S, P, A: see lua/copy_session.lua
    key: str  # the full cluster key
    value: bytes
    pttl: int | None


@dataclass(slots=True)
class Copy:
    """What copying one session writes: `group` in one script on its key's slot, then each of
    `pointers` (user pointers in other slots) in a step of its own."""

    source_key: str
    target_key: str
    group: list[Step]
    pointers: list[Step] = field(default_factory=list)
    resealed: bytes | None = None  # the JSON of a blob resealed for its new key or namespace

    @property
    def rekeyed(self) -> bool:
        return self.source_key != self.target_key


def _suffix(value: str, target: RedisKeys, what: str) -> tuple[UserSlot, str]:
    """A single-node pointer suffix as its slot and its cluster form (led by the user's tag)."""
    slot = parse_slot(value)
    if slot is None:
        raise Skip(f"its {what} holds no pointer suffix")
    return slot, target.slot_suffix(slot)


def _hint(value: str, target: RedisKeys) -> tuple[UserSlot, str]:
    """A wait hint `{ttl ms}:{suffix}:{scope_hash}` as its slot and its cluster form."""
    ttl, _, scope = value.partition(":")
    head, _, scope_hash = scope.rpartition(":")
    if not (ttl.isdigit() or ttl == "") or not scope_hash:
        raise Skip("its wait hint is unreadable")
    slot, suffix = _suffix(head, target, "wait hint")
    return slot, f"{ttl}:{suffix}:{scope_hash}"


class Source(NamedTuple):
    """One session as the source walk found it."""

    key: str
    blob: bytes
    pttl: int | None
    data: SessionData | None  # None: a sealed blob this run cannot open
    meta: MetaRecord | None
    hint: MetaRecord | None
    refs: list[RefRecord]


_NOT_OPENED = (
    "its blob is sealed, bound to its session key and namespace, and does not open without "
    "the keys: give the keys (--keys-file or $GREENTIC_SESSION_KEYS) to reseal it"
)


def _rebound(found: Source, plain: bytes | None, target_key: str, sealer: Sealer | None) -> bytes:
    """The blob to write under `target_key`: the stored bytes, or with `sealer` (the target
    namespace's, given when the blob must be bound anew) resealed from `plain`."""
    if sealer is None:
        return found.blob
    if found.data is None or plain is None:
        raise Skip(_NOT_OPENED)
    owner = scope_of(found.data.tenant_ctx)
    return sealer.seal(plain, session_key=target_key, owner_digest=sealer.owner_digest(owner))


def plan(
    found: Source,
    source: Layout,
    target: RedisKeys,
    *,
    plain: bytes | None = None,
    target_sealer: Sealer | None = None,
) -> Copy:
    """The cluster keys of one source session (see the module docstring); `Skip` when it has
    none that the cluster store could use. `plain` is the blob's JSON and `target_sealer` the
    cluster namespace's, used when a sealed blob must be bound to a new key or namespace."""
    refs = [(source.parse(ref.key), ref) for ref in found.refs]
    target_key = _target_key(found, [p for p, _ in refs], target)
    tagged, tag = is_tagged(target_key), key_tag(target_key)
    sealed = found.blob[:1] == bytes((MAGIC,))
    rebind = sealed and (target_key != found.key or target.namespace != source.namespace)
    if rebind and target_sealer is None:
        raise Skip(_NOT_OPENED)
    blob = _rebound(found, plain, target_key, target_sealer if rebind else None)

    def same_slot(slot: UserSlot, what: str) -> None:
        # A tagged key's scripts read its pointer and wait keys on its own node.
        if tagged and target.tag(slot) != tag:
            raise Skip(f"its {what} names another user than its key's cluster hash tag")

    group = [Step("B", target.session(target_key), blob, found.pttl)]
    if found.meta is not None:
        value = ""
        if found.meta.value:
            slot, value = _suffix(found.meta.value, target, "meta key")
            same_slot(slot, "meta key")
        group.append(Step("S", target.meta(target_key), value.encode(), found.meta.pttl))
    if found.hint is not None:
        slot, value = _hint(found.hint.value, target)
        same_slot(slot, "wait hint")
        group.append(Step("S", target.wait_hint(target_key), value.encode(), found.hint.pttl))
    pointers: list[Step] = []
    name = target_key.encode()
    for parsed, ref in refs:
        at = parsed.slot
        assert at is not None  # a reference kind
        same_slot(at, "user pointer or wait key")
        if parsed.kind is Kind.POINTER:
            step = Step("P", target.user(at), name, ref.pttl)
            (group if tagged else pointers).append(step)
        elif parsed.kind is Kind.WAIT_SET:
            group.append(Step("A", target.wait_user(at), name, ref.pttl))
        else:
            scope_hash = ref.key.rpartition(":")[2]
            group.append(Step("S", target.wait_scope(at, scope_hash), name, ref.pttl))
    return Copy(found.key, target_key, group, pointers, plain if rebind else None)


def _target_key(found: Source, refs: list[Parsed], target: RedisKeys) -> str:
    """The session's key in the cluster: its own, or for a wait `session_key_for`'s."""
    waits = [parsed.slot for parsed in refs if parsed.kind in (Kind.WAIT_SCOPE, Kind.WAIT_SET)]
    if found.hint is None and not waits:
        return found.key
    if found.data is None:
        raise Skip(_NOT_OPENED)
    owner = scope_of(found.data.tenant_ctx)
    if owner.user is None:
        raise Skip("a wait session whose data names no user")
    home = UserSlot(owner.env, owner.tenant_id, owner.team, owner.user)
    if any(slot != home for slot in waits):
        raise Skip("a wait key of this session belongs to another user")
    return target.tagged_key(home, found.key)


def _args(dry: bool, steps: list[Step]) -> tuple[tuple[str, ...], tuple[str | bytes, ...]]:
    keys = tuple(step.key for step in steps)
    args: list[str | bytes] = ["1" if dry else "0"]
    for step in steps:
        args += [step.op, step.value, "" if step.pttl is None else str(step.pttl)]
    return keys, tuple(args)


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    rekeyed: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Copier:
    def __init__(self, caller: Caller, *, dry: bool, sealer: Sealer | None = None) -> None:
        self.caller = caller
        self.dry = dry
        self.sealer = sealer  # the cluster namespace's: opens a resealed copy made before
        self.tally = Tally()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def run(self, copies: list[Copy]) -> None:
        """Copy `copies` concurrently; the first store error is raised once all have ended."""
        outcomes = await asyncio.gather(*map(self._one, copies), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _one(self, copy: Copy) -> None:
        async with self._gate:
            counts = self.tally.counts
            keys, args = _args(self.dry, copy.group)
            reply: Any = await self.caller.eval(
                COPY_SESSION, keys, args, write=True, key=copy.target_key
            )
            status, written, taken = (int(part) for part in reply)
            if status == -1 and await self._resealed_before(copy):
                status = 0
            if status < 0:
                why = "holds other data" if status == -1 else "has another of its keys taken"
                self.tally.conflicts.append(f"{copy.source_key}: the cluster {why}")
                counts["conflicts"] += 1
                return
            counts["copied" if status == 1 else "already_there"] += 1
            if status == 1 and copy.rekeyed:
                self.tally.rekeyed[copy.source_key] = copy.target_key
            counts["pointers_copied"] += written
            counts["pointers_taken"] += taken
            for step in copy.pointers:  # after the blob, as the cluster store creates
                pttl = "" if step.pttl is None else str(step.pttl)
                done = await self.caller.eval(
                    COPY_POINTER,
                    (step.key,),
                    ("1" if self.dry else "0", step.value, pttl),
                    write=True,
                    key=copy.target_key,
                )
                outcome = {1: "copied", 0: "already_there"}.get(int(done), "taken")
                counts[f"pointers_{outcome}"] += 1

    async def _resealed_before(self, copy: Copy) -> bool:
        """Whether the cluster blob of a resealed `copy` opens to the same JSON (an earlier run
        resealed it: the bytes differ by their nonce)."""
        if copy.resealed is None or self.sealer is None:
            return False
        stored = await self.caller.execute("GET", copy.group[0].key, key=copy.target_key)
        if not isinstance(stored, bytes):
            return False
        opened: bytes | None = None
        try:
            opened = self.sealer.open(stored, session_key=copy.target_key, limit=None)
        except InternalError:
            return False
        return opened == copy.resealed


async def copy_to_cluster(ctx: Context, target: RedisSessionStore, *, yes: bool) -> Report:
    """Copy every session of the source namespace into the cluster `target` stores in."""
    if not target.is_cluster:
        raise TypeError("copy-to-cluster needs a cluster store")
    caller = target.caller
    keys = target.keys
    # Reach the cluster (its slot map) before walking the source: an unreachable target fails
    # the command at once, with nothing read or written.
    await caller.execute("EXISTS", keys.session_prefix)
    index, first = await index_references(ctx, "copy: indexing")
    target_sealer = ctx.sealing.for_namespace(keys.namespace)
    copier = Copier(caller, dry=not yes, sealer=target_sealer)
    tally = copier.tally
    second = ctx.walker("copy: sessions")
    sessions = 0
    if not first.interrupted:
        match = ctx.layout.keys.session_prefix + "*"
        async for batch in second.batches(frozenset({Kind.SESSION}), match=match):
            copies = []
            for entry in batch:
                found = index.blob(entry, unopened=True)
                if found is None:
                    continue
                sessions += 1
                key = found.key
                source = Source(key, found.raw, entry.pttl, found.data, *index.take(key))
                try:
                    copies.append(
                        plan(
                            source,
                            ctx.layout,
                            keys,
                            plain=found.plain,
                            target_sealer=target_sealer,
                        )
                    )
                except Skip as exc:
                    tally.skipped.append(f"{key}: {exc.reason}")
            await copier.run(copies)
    interrupted = first.interrupted or second.interrupted
    return _report(tally, index.skipped, sessions, index.leftover, yes=yes, interrupted=interrupted)


def _report(
    tally: Tally,
    unreadable: list[str],
    sessions: int,
    orphans: int,
    *,
    yes: bool,
    interrupted: bool,
) -> Report:
    counts = tally.counts
    skipped = [*unreadable, *tally.skipped]
    result: dict[str, Any] = {
        "dry_run": not yes,
        "sessions": sessions,
        "copied": counts["copied"],
        "rekeyed": tally.rekeyed,
        "already_there": counts["already_there"],
        "conflicts": tally.conflicts,
        "skipped": skipped,
        "pointers": {
            "copied": counts["pointers_copied"],
            "already_there": counts["pointers_already_there"],
            "taken": counts["pointers_taken"],
        },
        "orphan_refs_not_copied": 0 if interrupted else orphans,
        "interrupted": interrupted,
    }
    verb = "copied" if yes else "to copy"
    rows = [
        ("sessions read from the source", sessions),
        (f"sessions {verb}", counts["copied"]),
        ("  of them waits re-keyed (session_key_for)", len(tally.rekeyed)),
        ("sessions already in the cluster", counts["already_there"]),
        ("conflicts (left as they are)", len(tally.conflicts)),
        ("skipped", len(skipped)),
        (f"user pointers {verb}", counts["pointers_copied"]),
        ("user pointers already there", counts["pointers_already_there"]),
        ("user pointers taken (left as they are)", counts["pointers_taken"]),
        ("orphan references not copied", result["orphan_refs_not_copied"]),
    ]
    lines = table(["what", "count"], rows)
    lines += [f"re-keyed wait: {old} -> {new}" for old, new in tally.rekeyed.items()]
    lines += [f"conflict: {line}" for line in tally.conflicts]
    lines += [f"skipped {line}" for line in skipped]
    if not yes:
        lines.append("dry run: nothing was written; run again with --yes")
    problems = tally.conflicts or skipped or counts["pointers_taken"]
    report = Report(ExitCode.PROBLEMS if problems else ExitCode.OK, result, lines)
    if interrupted:
        report.lines.append("(interrupted: running the same command again completes the copy)")
        report.code = ExitCode.INTERRUPTED
        report.message = "interrupted"
    return report
