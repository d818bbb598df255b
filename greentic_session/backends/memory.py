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
sound when shared across threads or event loops. Stored copies are never mutated nor handed out,
so copying them needs no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from msgspec.structs import force_setattr

from ..codec import decode_session_data, encode_session_data
from ..errors import NotFoundError, StoreClosedError
from ..fence import (
    Scope,
    UserSlot,
    check_create,
    check_key,
    check_update,
    lookup_slot,
    visible_to,
)
from ..schema import (
    Impersonation,
    InvocationDeadline,
    SessionCursor,
    SessionData,
    SessionKey,
    TenantCtx,
    check_writable,
    new_session_key,
)
from ..store import SessionStore

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


def _stored_form(data: SessionData) -> SessionData:
    """Refuse what Redis refuses, then make the private copy the store keeps."""
    check_writable(data)
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


class _Entry(NamedTuple):
    data: SessionData  # private: never mutated, never handed out (reads get a copy)
    owner: Scope
    # The slot create pointed at this session: lets remove clear a pointer made from the
    # caller's user when the data itself has none.
    slot: UserSlot | None


class InMemorySessionStore(SessionStore):
    """Process-local store; every instance is independent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}
        self._pointers: dict[UserSlot, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"InMemorySessionStore(sessions={len(self._sessions)}, closed={self._closed})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    async def create_session(self, ctx: TenantCtx, data: SessionData) -> SessionKey:
        self._check_open()
        stored = _stored_form(data)  # first, as in Redis: the fence reads fields this checks
        owner, slot = check_create(ctx, data)
        entry = _Entry(stored, owner, slot)
        key = new_session_key()
        with self._lock:
            self._sessions[key] = entry
            if slot is not None:
                self._pointers[slot] = key
        return key

    async def get_session(self, key: str) -> SessionData | None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._sessions.get(key)
        return None if entry is None else _private_copy(entry.data)

    async def update_session(self, key: str, data: SessionData) -> None:
        self._check_open()
        check_key(key)
        stored = _stored_form(data)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            check_update(entry.owner, data)
            self._sessions[key] = entry._replace(data=stored)

    async def remove_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        with self._lock:
            entry = self._sessions.pop(key, None)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            if entry.slot is not None and self._pointers.get(entry.slot) == key:
                del self._pointers[entry.slot]

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        slot = lookup_slot(ctx, user)
        with self._lock:
            key = self._pointers.get(slot)
            if key is None:
                return None
            entry = self._sessions.get(key)
            if entry is None or not visible_to(slot, entry.owner):
                del self._pointers[slot]  # stale; we hold the lock, so it still holds `key`
                return None
        return SessionKey(key), _private_copy(entry.data)

    async def aclose(self) -> None:
        self._closed = True
