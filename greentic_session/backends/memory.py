"""InMemorySessionStore: a lock-guarded dict for tests, single-process runners and dev.

Sessions are kept as private structural copies, never as the caller's objects, and every read
hands out a fresh copy, so nothing a caller holds aliases stored state. A structural copy is
enough because every Struct of the schema is frozen and every field holds a str, an int, None
or another frozen Struct, all of which can be shared safely; the one mutable value reachable
from a `SessionData` is `TenantCtx.attributes` (a dict), which each copy replaces with its own.
So a copy is two shallow Struct copies and one dict copy: 0.3 us whatever the payload size,
where the encode on write and decode on read it replaces grow with `context_json` (about 5 us
each at 4 KiB, 50 us at 64 KiB).
msgspec's shallow copy does not re-run `__post_init__`: the identifiers were validated when
the caller built the data, and `check_writable` type-checks every field on each write, which
refuses exactly what the Redis backend refuses (it runs the same check when encoding).

`test_the_only_mutable_field_is_tenant_ctx_attributes` in tests/test_memory_store.py walks the
schema and fails as soon as a field with a mutable type is added: `_private_copy` must then copy
that field too. Data built from subclasses of the schema's Structs (whose extra fields may be
mutable) is not copied structurally but stored as the codec round trip makes it, which is also
exactly what Redis would hand back. A `str` subclass in a field is kept as given (its text is
immutable; only attributes the subclass adds would be shared).

The lock is a `threading.Lock` held only around dict work that never awaits, so it is
cancellation-safe by construction, costs no event-loop round trip, and also keeps the store
sound when shared across threads or event loops (and under any async library: nothing here is
asyncio-specific). Stored copies are never mutated nor handed out, so copying them needs no lock.
`find_or_create` calls `build()` outside the lock and re-checks the user's slot under it, so a
cancelled or slow builder never blocks that slot.

Revisions are a per-store counter, bumped by every write. Expiry follows `expiry.Expiry` on an
injectable clock (`time.monotonic` by default): an expired session reads as absent at once, and
its memory is given back by the next call after it expired, which pops the due entries of a heap
of deadlines (amortized O(log n) per write, no thread and no timer per session).

Waits are indexed by the segments Redis keys them with (`fence.wait_segments`: a team "-" and no
team share them), in a scope-pointer dict and per-user key sets; an entry records the wait it
is, so dropping the entry (remove, clear, expiry) drops its indexes in the same step. A wait's
ttl makes the store track deadlines even without expiry options. A wait's deadline (`due_in`)
lives in a `memory_due.DueBook`, dropped with the wait.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import msgspec
from msgspec.structs import force_setattr

from ..codec import decode_session_data, encode_session_data
from ..deadlines import DueWait, check_claim, check_due, due_millis
from ..errors import ConflictError, NotFoundError, StoreClosedError
from ..expiry import Expiry
from ..fence import (
    FOREIGN,
    LIVE,
    Scope,
    UserSlot,
    check_create,
    check_find_or_create,
    check_key,
    check_register_wait,
    check_update,
    erase_slot,
    lookup_slot,
    own_slot,
    scope_hash_of,
    scope_of,
    visible_to,
    wait_lookup_slot,
    wait_segments,
    wait_ttl_millis,
    wait_verdict,
)
from ..limits import DEFAULT_MAX_BLOB_BYTES, check_data, check_max_blob_bytes
from ..schema import (
    Impersonation,
    InvocationDeadline,
    ReplyScope,
    SessionCursor,
    SessionData,
    SessionKey,
    TenantCtx,
    check_writable,
    new_session_key,
)
from ..sealing import Encryption, Sealer
from ..store import SessionBuilder, SessionEntry, SessionStore, resolve
from .memory_due import DueBook

__all__ = ["InMemorySessionStore"]

# msgspec's own shallow Struct copy, the method `copy.copy` dispatches to, called directly: it
# skips copy's type lookup (0.12 instead of 0.3 us). msgspec's stub does not declare it.
_shallow_copy: Callable[[Any], Any] = msgspec.Struct.__copy__  # type: ignore[attr-defined]


def _private_copy(data: SessionData) -> SessionData:
    """A copy of `data` that shares no mutable object with it (see the module docstring)."""
    ctx = data.tenant_ctx
    new_ctx: TenantCtx = _shallow_copy(ctx)
    force_setattr(new_ctx, "attributes", dict(ctx.attributes))
    new_data: SessionData = _shallow_copy(data)
    force_setattr(new_data, "tenant_ctx", new_ctx)
    return new_data


def _stored_form(data: SessionData, max_blob_bytes: int | None) -> SessionData:
    """Refuse what Redis refuses, then make the private copy the store keeps."""
    chars = check_writable(data)
    if max_blob_bytes is not None:
        check_data(data, max_blob_bytes, chars)
    ctx = data.tenant_ctx
    deadline, actor = ctx.deadline, ctx.impersonation
    if (
        type(data) is SessionData
        and type(ctx) is TenantCtx
        and type(data.cursor) is SessionCursor
        and (deadline is None or type(deadline) is InvocationDeadline)
        and (actor is None or type(actor) is Impersonation)
    ):
        return _private_copy(data)
    # A subclass may add mutable fields the structural copy would share: store what Redis would.
    return decode_session_data(encode_session_data(data))


# The namespace a sealing in-memory store binds its blobs to (sealing.py's associated data).
_NAMESPACE = "in-memory"

Segments = tuple[str, str, str, str]  # fence.wait_segments: a user's waits, as Redis keys them


class _Wait(NamedTuple):
    """What makes a session a wait: the user and scope it waits in, and its ttl (whole ms, the
    store's idle_ttl when registered without one; None: no expiry of its own)."""

    segments: Segments
    scope_hash: str
    ttl_ms: int | None


class _Entry(NamedTuple):
    # Private: never mutated, never handed out (reads get a copy). In a sealing store, the
    # sealed bytes (sealing.py), opened on every read.
    data: SessionData | bytes
    owner: Scope
    # The slot create pointed at this session: lets remove clear a pointer made from the
    # caller's user when the data itself has none.
    slot: UserSlot | None
    revision: int
    created: float  # clock time of creation (max_lifetime counts from it)
    expires: float | None  # clock time it expires at; None: never
    wait: _Wait | None = None  # set while the session is a registered wait


Clock = Callable[[], float]


class InMemorySessionStore(SessionStore):
    """Process-local store; every instance is independent.

    `idle_ttl` and `max_lifetime` (seconds) are the expiry options of `expiry.Expiry`;
    `clock` (seconds, monotonic) is injectable for tests; `max_blob_bytes` caps a session's
    encoded size (see `limits`). Without expiry options no clock is read and no deadline kept.
    `encryption` and `compression` hold every session sealed (`sealing`), opened on each read.
    """

    def __init__(
        self,
        *,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        encryption: Encryption | None = None,
        compression: Literal["zstd"] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._expiry = Expiry(idle_ttl, max_lifetime)
        self._expiring = self._expiry.enabled
        self._max_blob_bytes = check_max_blob_bytes(max_blob_bytes)
        # With an option, sessions are held sealed, as Redis holds them: a heap dump or a core
        # file shows no session data (the indexes still name users, as Redis key names do).
        sealer = Sealer(_NAMESPACE, encryption=encryption, compression=compression)
        self._sealer = None if sealer.identity else sealer
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}
        self._pointers: dict[UserSlot, str] = {}
        # The wait indexes, keyed like Rust's Redis keys: scope pointers and per-user key sets.
        self._scopes: dict[tuple[Segments, str], str] = {}
        self._waits: dict[Segments, set[str]] = {}
        self._revisions = itertools.count(1)
        # (expires, key) of every write with a deadline; items whose entry has moved on are stale.
        self._deadlines: list[tuple[float, str]] = []
        self._high_water = 0  # most sessions held since the tables were last compacted
        self._due: DueBook[_Wait] = DueBook()
        self._epoch = time.time() - clock()  # the clock's reading as epoch seconds: + this
        self._closed = False

    def __repr__(self) -> str:
        sealing = "" if self._sealer is None else f", sealer={self._sealer!r}"
        return (
            f"InMemorySessionStore(sessions={len(self._sessions)}, closed={self._closed}{sealing})"
        )

    # -- sealing: only when the store has an option ------------------------------------------------

    def _held(self, key: str, stored: SessionData, owner: Scope) -> SessionData | bytes:
        """What the store holds for `stored` at `key`: itself, or in a sealing store its sealed
        bytes."""
        sealer = self._sealer
        if sealer is None:
            return stored
        blob = encode_session_data(stored)
        return sealer.seal(blob, session_key=key, owner_digest=sealer.owner_digest(owner))

    def _data_of(self, key: str, held: SessionData | bytes) -> SessionData:
        """A private copy of what the store holds at `key`."""
        if type(held) is bytes:
            assert self._sealer is not None
            return decode_session_data(
                self._sealer.open(held, session_key=key, limit=self._max_blob_bytes)
            )
        assert isinstance(held, SessionData)
        return _private_copy(held)

    def _entry_of(self, key: str, entry: _Entry) -> SessionEntry:
        return SessionEntry(SessionKey(key), self._data_of(key, entry.data), str(entry.revision))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    # -- expiry: only when the store has an option; every caller holds the lock ----------------

    def _now(self) -> float:
        """The clock, after dropping every session that has expired by now."""
        now = self._clock()
        due = self._deadlines
        while due and due[0][0] <= now:
            expires, key = heapq.heappop(due)
            entry = self._sessions.get(key)
            if entry is not None and entry.expires == expires:
                self._drop(key, entry)
        if len(due) > 2 * len(self._sessions) + 64:  # refreshed sessions left stale items
            due[:] = [item for item in due if self._is_current(item)]
            heapq.heapify(due)
        if len(self._sessions) < self._high_water // 4:
            # Python dicts never shrink on delete: copy them once most entries are gone.
            self._sessions = dict(self._sessions)
            self._pointers = dict(self._pointers)
            self._scopes = dict(self._scopes)
            self._waits = dict(self._waits)
            self._high_water = len(self._sessions)
        return now

    def _is_current(self, item: tuple[float, str]) -> bool:
        entry = self._sessions.get(item[1])
        return entry is not None and entry.expires == item[0]

    def _live(self, key: str) -> _Entry | None:
        """The entry at `key`, None if missing or expired (hot paths inline the no-expiry case)."""
        if not self._expiring:
            return self._sessions.get(key)
        self._now()  # drops every expired entry, `key`'s included
        return self._sessions.get(key)

    def _schedule(self, key: str, entry: _Entry) -> None:
        """Track `entry`'s deadline, just stored at `key`."""
        if entry.expires is not None:
            heapq.heappush(self._deadlines, (entry.expires, key))
        self._high_water = max(self._high_water, len(self._sessions))

    def _drop(self, key: str, entry: _Entry) -> None:
        """Delete `entry`, its pointer if that still names it, and its wait indexes."""
        del self._sessions[key]
        if entry.slot is not None and self._pointers.get(entry.slot) == key:
            del self._pointers[entry.slot]
        if entry.wait is not None:
            self._unindex(entry.wait.segments, entry.wait.scope_hash, key)
            self._due.drop(key)

    def _unindex(self, segments: Segments, scope_hash: str, key: str) -> None:
        """Drop `key` from a user's waits, and the scope pointer if it still names `key`."""
        if self._scopes.get((segments, scope_hash)) == key:
            del self._scopes[segments, scope_hash]
        members = self._waits.get(segments)
        if members is not None:
            members.discard(key)
            if not members:
                del self._waits[segments]

    def _add(self, key: str, data: SessionData | bytes, owner: Scope, slot: UserSlot | None) -> int:
        """Store a new session (and its pointer); return its revision."""
        revision = next(self._revisions)
        if self._expiring:
            now = self._now()
            entry = _Entry(
                data, owner, slot, revision, now, self._expiry.deadline(created=now, now=now)
            )
            self._sessions[key] = entry
            self._schedule(key, entry)
        else:
            self._sessions[key] = _Entry(data, owner, slot, revision, 0.0, None)
        if slot is not None:
            self._pointers[slot] = key
        return revision

    def _restarted(self, entry: _Entry) -> float | None:
        """`entry`'s deadline after a write or touch now: the idle clock restarts (a wait's own
        ttl stands in for idle_ttl); in a store without expiry options a deadline (a wait's) is
        kept as it is."""
        if entry.expires is None or not self._expiry.enabled:
            return entry.expires
        if entry.wait is not None:
            return self._wait_expiry(entry.wait.ttl_ms).deadline(
                created=entry.created, now=self._clock()
            )
        return self._expiry.deadline(created=entry.created, now=self._clock())

    def _wait_expiry(self, ttl_ms: int | None) -> Expiry:
        """The expiry rule of a wait: its ttl as the idle time, under the store's lifetime."""
        idle = None if ttl_ms is None else ttl_ms / 1000
        return Expiry(idle, self._expiry.max_lifetime)

    # -- the SessionStore API --------------------------------------------------------------------

    async def create_session(
        self, ctx: TenantCtx, data: SessionData, *, key: str | None = None
    ) -> SessionKey:
        self._check_open()
        if key is not None:
            check_key(key)
        stored = _stored_form(data, self._max_blob_bytes)  # first: the fence reads its fields
        owner, slot = check_create(ctx, data)
        new_key = new_session_key() if key is None else SessionKey(key)
        held = self._held(new_key, stored, owner)
        with self._lock:
            if key is not None and self._live(key) is not None:
                raise ConflictError(f"a session with key {key!r} already exists")
            self._add(new_key, held, owner, slot)
        return new_key

    async def get_session(self, key: str) -> SessionData | None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._live(key) if self._expiring else self._sessions.get(key)
        return None if entry is None else self._data_of(key, entry.data)

    async def get_entry(self, key: str) -> SessionEntry | None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._live(key) if self._expiring else self._sessions.get(key)
        return None if entry is None else self._entry_of(key, entry)

    async def update_session(
        self, key: str, data: SessionData, *, expected_revision: str | None = None
    ) -> None:
        self._replace(key, data, expected_revision)

    async def _compare_and_set(self, key: str, data: SessionData, token: object) -> str:
        assert isinstance(token, str)  # the revision (SessionStore._read_for_update)
        return str(self._replace(key, data, token))

    def _replace(self, key: str, data: SessionData, expected: str | None) -> int:
        """The write behind update_session and compare-and-set; returns the new revision."""
        self._check_open()
        check_key(key)
        if expected is not None and not isinstance(expected, str):
            raise TypeError(f"expected_revision must be str, not {type(expected).__name__}")
        stored = _stored_form(data, self._max_blob_bytes)
        # (A write by another owner is refused below; its sealed bytes are never stored.)
        held = (
            stored if self._sealer is None else self._held(key, stored, scope_of(data.tenant_ctx))
        )
        with self._lock:
            entry = self._live(key) if self._expiring else self._sessions.get(key)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            if expected is not None and str(entry.revision) != expected:
                raise ConflictError(f"session {key!r} changed since revision {expected!r}")
            check_update(entry.owner, data)
            revision = next(self._revisions)
            if entry.expires is None:
                # Built directly: NamedTuple._replace costs a few hundred ns on this hot path.
                _, owner, slot, _, created, _, wait = entry
                self._sessions[key] = _Entry(held, owner, slot, revision, created, None, wait)
            else:
                entry = entry._replace(data=held, revision=revision, expires=self._restarted(entry))
                self._sessions[key] = entry
                self._schedule(key, entry)
        return revision

    async def touch_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._live(key) if self._expiring else self._sessions.get(key)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            if entry.expires is not None:  # the data and so the revision stay as they are
                entry = entry._replace(expires=self._restarted(entry))
                self._sessions[key] = entry
                self._schedule(key, entry)

    async def remove_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._live(key) if self._expiring else self._sessions.get(key)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            self._drop(key, entry)

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        slot = lookup_slot(ctx, user)
        with self._lock:
            found = self._at_slot(slot)
        return (
            None
            if found is None
            else (SessionKey(found[0]), self._data_of(found[0], found[1].data))
        )

    async def find_entry(self, ctx: TenantCtx, user: str) -> SessionEntry | None:
        self._check_open()
        slot = lookup_slot(ctx, user)
        with self._lock:
            found = self._at_slot(slot)
        return None if found is None else self._entry_of(*found)

    def _at_slot(self, slot: UserSlot) -> tuple[str, _Entry] | None:
        """The live session `slot` points at, visible to it; drops a stale pointer (lock held)."""
        key = self._pointers.get(slot)
        if key is None:
            return None
        entry = self._live(key) if self._expiring else self._sessions.get(key)
        if entry is None or not visible_to(slot, entry.owner):
            self._pointers.pop(slot, None)  # stale (an expiry sweep may have dropped it already)
            return None
        return key, entry

    async def find_or_create(
        self, ctx: TenantCtx, user: str, build: SessionBuilder
    ) -> tuple[SessionEntry, bool]:
        self._check_open()
        slot = own_slot(ctx, user)
        with self._lock:
            found = self._at_slot(slot)
        if found is not None:
            return self._entry_of(*found), False
        # Built outside the lock: a slow or cancelled builder holds nothing.
        data = await resolve(build())
        stored = _stored_form(data, self._max_blob_bytes)
        owner, slot = check_find_or_create(ctx, slot, data)
        key = new_session_key()
        held = self._held(key, stored, owner)  # sealed outside the lock
        with self._lock:
            found = self._at_slot(slot)
            if found is not None:  # another call created it while we built
                return self._entry_of(*found), False
            revision = self._add(key, held, owner, slot)
        return SessionEntry(key, _private_copy(stored), str(revision)), True

    # -- reply-scope waits -----------------------------------------------------------------------

    async def register_wait(
        self,
        ctx: TenantCtx,
        user_id: str,
        scope: ReplyScope,
        session_key: str,
        data: SessionData,
        *,
        ttl: float | None = None,
        due_in: float | None = None,
    ) -> None:
        self._check_open()
        key = check_key(session_key)
        scope_hash = scope_hash_of(scope)
        stored = _stored_form(data, self._max_blob_bytes)
        owner, slot = check_register_wait(ctx, user_id, data)
        held = self._held(key, stored, owner)  # sealed outside the lock: nothing half done
        ttl_ms = wait_ttl_millis(ttl, self._expiry.idle_ttl)
        due_ms = due_millis(due_in, ttl_ms)
        wait = _Wait(wait_segments(slot), scope_hash, ttl_ms)
        rule = self._wait_expiry(ttl_ms)
        with self._lock:
            if rule.enabled:
                self._expiring = True  # from now on reads check deadlines
            now = self._now() if self._expiring else 0.0
            existing = self._sessions.get(key)
            if existing is not None:
                check_update(existing.owner, data)
                old = existing.wait
                if old is not None and old[:2] != wait[:2]:
                    self._unindex(old.segments, old.scope_hash, key)  # moved to another scope
            previous = self._scopes.get((wait.segments, scope_hash))
            if previous is not None and previous != key:
                self._supersede(previous, wait)
            created = now if existing is None else existing.created
            entry = _Entry(
                held,
                owner,
                None if existing is None else existing.slot,  # never moves a user pointer
                next(self._revisions),
                created,
                rule.deadline(created=created, now=now),
                wait,
            )
            self._sessions[key] = entry
            self._schedule(key, entry)
            self._scopes[wait.segments, scope_hash] = key
            self._waits.setdefault(wait.segments, set()).add(key)
            if due_ms is not None:
                self._due.set(key, wait, scope, user_id, self._clock() + due_ms / 1000)
            else:
                self._due.drop(key)

    def _supersede(self, key: str, by: _Wait) -> None:
        """`key` was the wait `by` replaces: it stays a session but stops being a wait."""
        self._unindex(by.segments, by.scope_hash, key)
        entry = self._sessions.get(key)
        if entry is not None and entry.wait is not None and entry.wait[:2] == by[:2]:
            self._sessions[key] = entry._replace(wait=None)
            self._due.drop(key)

    def _live_wait(self, slot: UserSlot, key: str) -> tuple[str, _Entry | None]:
        """The fence's verdict on the session `key` named by a wait index of `slot`."""
        entry = self._live(key)
        return (FOREIGN, None) if entry is None else (wait_verdict(slot, entry.owner), entry)

    async def find_wait_by_scope(
        self, ctx: TenantCtx, user_id: str, scope: ReplyScope
    ) -> SessionKey | None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        segments, scope_hash = wait_segments(slot), scope_hash_of(scope)
        with self._lock:
            key = self._scopes.get((segments, scope_hash))
            if key is None:
                return None
            verdict, _ = self._live_wait(slot, key)
            if verdict == FOREIGN:
                self._unindex(segments, scope_hash, key)
        return SessionKey(key) if verdict == LIVE else None

    async def list_waits_for_user(self, ctx: TenantCtx, user_id: str) -> list[SessionKey]:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        segments = wait_segments(slot)
        found: list[SessionKey] = []
        with self._lock:
            for key in list(self._waits.get(segments, ())):
                verdict, _ = self._live_wait(slot, key)
                if verdict == LIVE:
                    found.append(SessionKey(key))
                elif verdict == FOREIGN:
                    members = self._waits.get(segments)
                    if members is not None:
                        members.discard(key)
                        if not members:
                            del self._waits[segments]
        return found

    async def clear_wait(self, ctx: TenantCtx, user_id: str, scope: ReplyScope) -> None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        segments, scope_hash = wait_segments(slot), scope_hash_of(scope)
        with self._lock:
            key = self._scopes.get((segments, scope_hash))
            if key is None:
                return
            verdict, entry = self._live_wait(slot, key)
            if verdict == LIVE and entry is not None:
                self._drop(key, entry)
            elif verdict == FOREIGN:
                self._unindex(segments, scope_hash, key)

    # -- erasure -----------------------------------------------------------------------------------

    async def erase_user(self, ctx: TenantCtx, user_id: str) -> int:
        self._check_open()
        slot = erase_slot(ctx, user_id)
        owner = Scope(slot.env, slot.tenant_id, slot.team, slot.user)
        with self._lock:  # one pass, no await: no call sees the user half erased
            if self._expiring:
                self._now()  # expired sessions go first (they are not counted)
            doomed = [(key, entry) for key, entry in self._sessions.items() if entry.owner == owner]
            for key, entry in doomed:
                self._drop(key, entry)
            self._pointers.pop(slot, None)  # a pointer to a user-less session names the user too
        return len(doomed)

    # -- deadlines (see `deadlines`) ---------------------------------------------------------------

    async def claim_due_waits(self, *, limit: int = 100, lease: float = 30.0) -> list[DueWait]:
        self._check_open()
        limit, lease_ms = check_claim(limit, lease)
        with self._lock:
            claimed = self._due.claim(self._clock(), limit, lease_ms / 1000, self._standing)
        return [
            DueWait(
                SessionKey(key),
                record.user_id,
                record.scope,
                self._entry_of(key, entry),
                record.due + self._epoch,
                record.attempt,
                record.lease_id or "",
            )
            for key, record, entry in claimed
        ]

    def _standing(self, key: str, wait: _Wait) -> _Entry | None:
        """The entry of `key` while it is still the wait `wait` (lock held), else None."""
        entry = self._live(key)
        if entry is None or entry.wait is None or entry.wait[:2] != wait[:2]:
            return None
        return entry if self._scopes.get((wait.segments, wait.scope_hash)) == key else None

    async def settle_due(self, due: DueWait) -> bool:
        self._check_open()
        due = check_due(due)
        with self._lock:
            record = self._due.settle(due.key, due.lease_id)
            return record is not None and self._standing(due.key, record.wait) is not None

    async def aclose(self) -> None:
        self._closed = True
