"""The seed's pattern: what the original Rust greentic-session Redis store does, on redis.asyncio.

A benchmark reference only, never shipped. It keeps the Rust store's access pattern exactly and
borrows everything else (codec, key layout, tenant fence) from this project, so that the
difference measured is the access pattern alone:

- a new connection per call (`Client::get_connection()`), closed when the call ends;
  `find_by_user` opens a second one for its inner `get_session`, as the Rust code does;
- one command per round trip, no MULTI, no pipelining, no scripts;
- create: SET blob, SET pointer;
- update: GET blob, decode, check owner, SET blob, GET pointer (DEL it if it points here),
  SET pointer;
- remove: GET blob, decode, DEL blob, GET pointer, DEL it if it points here;
- find_by_user: GET pointer, then (new connection) GET blob, decode, check visibility.

The connection sends no handshake (RESP2, so no HELLO; no CLIENT SETINFO), as a plain redis-rs
connection to database 0 without credentials sends none: its only extra cost is the TCP connect.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from greentic_session import NotFoundError, SessionData, SessionKey, TenantCtx
from greentic_session.backends.redis.keys import RedisKeys
from greentic_session.codec import decode_session_data, encode_session_data
from greentic_session.fence import (
    UserSlot,
    check_create,
    check_key,
    check_update,
    lookup_slot,
    scope_of,
    visible_to,
)

__all__ = ["SeedPatternStore"]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class SeedPatternStore:
    """The Rust seed's Redis access pattern; same keys, blobs and fence as the real store."""

    def __init__(self, url: str, *, namespace: str) -> None:
        self._url = url
        self.keys = RedisKeys(namespace)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[aioredis.Redis]:
        client = aioredis.Redis.from_url(
            self._url, single_connection_client=True, protocol=2, driver_info=None
        )
        try:
            yield client
        finally:
            await client.aclose()

    @staticmethod
    def _slot_of(data: SessionData, hint: TenantCtx | None) -> UserSlot | None:
        """Rust's `mapping_sources`: the data's user, else the caller's."""
        owner = scope_of(data.tenant_ctx)
        if owner.user is not None:
            return lookup_slot(data.tenant_ctx, owner.user)
        if hint is not None and hint.normalized_user is not None:
            return lookup_slot(hint, hint.normalized_user)
        return None

    async def create_session(self, ctx: TenantCtx, data: SessionData) -> SessionKey:
        check_create(ctx, data)
        key = SessionKey(str(uuid.uuid4()))
        payload = encode_session_data(data)
        async with self._conn() as conn:
            await conn.set(self.keys.session(key), payload)
            slot = self._slot_of(data, ctx)
            if slot is not None:
                await conn.set(self.keys.user(slot), key)
        return key

    async def get_session(self, key: str) -> SessionData | None:
        check_key(key)
        async with self._conn() as conn:
            raw = await conn.get(self.keys.session(key))
        return None if raw is None else decode_session_data(raw)

    async def _remove_pointer(self, conn: aioredis.Redis, data: SessionData, key: str) -> None:
        slot = self._slot_of(data, None)
        if slot is None:
            return
        pointer = self.keys.user(slot)
        stored = await conn.get(pointer)
        if stored is not None and _text(stored) == key:
            await conn.delete(pointer)

    async def update_session(self, key: str, data: SessionData) -> None:
        check_key(key)
        async with self._conn() as conn:
            blob_key = self.keys.session(key)
            raw = await conn.get(blob_key)
            if raw is None:
                raise NotFoundError(f"session {key!r} not found")
            previous = decode_session_data(raw)
            check_update(scope_of(previous.tenant_ctx), data)
            await conn.set(blob_key, encode_session_data(data))
            await self._remove_pointer(conn, previous, key)
            slot = self._slot_of(data, None)
            if slot is not None:
                await conn.set(self.keys.user(slot), key)

    async def remove_session(self, key: str) -> None:
        check_key(key)
        async with self._conn() as conn:
            blob_key = self.keys.session(key)
            raw = await conn.get(blob_key)
            if raw is None:
                raise NotFoundError(f"session {key!r} not found")
            data = decode_session_data(raw)
            await conn.delete(blob_key)
            await self._remove_pointer(conn, data, key)

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        slot = lookup_slot(ctx, user)
        async with self._conn() as conn:
            pointer = self.keys.user(slot)
            stored = await conn.get(pointer)
            if stored is None:
                return None
            key = _text(stored)
            data = await self.get_session(key)  # a second connection, as in the Rust code
            if data is not None and visible_to(slot, scope_of(data.tenant_ctx)):
                return SessionKey(key), data
            await conn.delete(pointer)
            return None
