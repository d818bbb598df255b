"""InMemorySessionStore: a lock-guarded dict for tests, single-process runners and dev.

Sessions are kept as their encoded bytes, so nothing a caller holds aliases stored state:
every read decodes a fresh object. The lock is a `threading.Lock` held only around dict work
that never awaits, so it is cancellation-safe by construction, costs no event-loop round trip,
and also keeps the store sound when shared across threads or event loops.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from ..codec import decode_session_data, encode_session_data
from ..errors import NotFoundError, UnavailableError
from ..fence import (
    Scope,
    UserSlot,
    check_create,
    check_key,
    check_update,
    lookup_slot,
    visible_to,
)
from ..schema import SessionData, SessionKey, TenantCtx, new_session_key
from ..store import SessionStore

__all__ = ["InMemorySessionStore"]


class _Entry(NamedTuple):
    blob: bytes
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
            raise UnavailableError("the session store is closed")

    async def create_session(self, ctx: TenantCtx, data: SessionData) -> SessionKey:
        self._check_open()
        owner, slot = check_create(ctx, data)
        entry = _Entry(encode_session_data(data), owner, slot)
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
        return None if entry is None else decode_session_data(entry.blob)

    async def update_session(self, key: str, data: SessionData) -> None:
        self._check_open()
        check_key(key)
        blob = encode_session_data(data)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                raise NotFoundError(f"session {key!r} not found")
            check_update(entry.owner, data)
            self._sessions[key] = entry._replace(blob=blob)

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
        return SessionKey(key), decode_session_data(entry.blob)

    async def aclose(self) -> None:
        self._closed = True
