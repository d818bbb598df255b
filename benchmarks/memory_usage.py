"""Case 5: bytes per session, for N sessions of N distinct users, beside the encoded blob size.

Every session is what a runner would build: its own `TenantCtx` (with its own user id) and its
own `context_json`, a string of the population's payload size that differs from every other
session's (`unique_payload`). The in-memory store keeps the caller's immutable strings rather
than a copy of them, so one payload shared by every session would make its figure dishonestly
small; Redis is fed the same sessions so the two rows stay comparable.

- in-memory: `tracemalloc` traced bytes before and after N rounds of "build the session, create
  it, drop the runner's references", so the delta is what the store alone keeps alive: its
  entries, keys and pointers, its copies of the Structs, and the strings they hold;
- Redis: `INFO memory` `used_memory` before and after creating N sessions through the store, at
  concurrency 64, in a fresh namespace that is deleted afterwards. Redis keeps a blob key and a
  user pointer key per session. On a server shared with other clients the delta is approximate.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from greentic_session import SessionCursor, SessionData, TenantCtx, encode_session_data

from .cases_memory import open_memory_store
from .cases_redis import delete_namespace, open_redis_store
from .payloads import ENV, FLOW_ID, NODE, TENANT, Population

__all__ = ["memory_footprint", "redis_footprint", "unique_payload"]

_TEXT = '"text":"'


def unique_payload(payload: str, index: int, count: int) -> str:
    """`payload` with the end of its last chat message replaced by `index`, zero-padded to the
    width of `count - 1`: as long as `payload`, still valid JSON, distinct for every index."""
    width = len(str(count - 1))
    start = payload.rindex(_TEXT) + len(_TEXT)
    end = payload.index('"', start)
    if end - start < width:
        raise ValueError(f"the payload's last message is too short to number {count} sessions")
    return f"{payload[: end - width]}{index:0{width}d}{payload[end:]}"


def _session(pop: Population, index: int) -> tuple[TenantCtx, SessionData]:
    """Session `index` of `pop`, built from scratch as a runner would: nothing shared with other
    sessions but the constant identifiers."""
    ctx = TenantCtx.new(ENV, TENANT, user=f"user-{index}")
    data = SessionData(
        tenant_ctx=ctx,
        flow_id=FLOW_ID,
        cursor=SessionCursor(node_pointer=NODE),
        context_json=unique_payload(pop.payload, index, pop.count),
    )
    return ctx, data


def _blob_size(pop: Population) -> int:
    """The encoded size of every session of `pop` (the same for all: only digits differ)."""
    size = len(encode_session_data(_session(pop, 0)[1]))
    if size != pop.blob_size:
        raise AssertionError(f"unique payloads changed the blob size: {size} != {pop.blob_size}")
    return size


async def memory_footprint(size: int, sessions: int) -> dict[str, Any]:
    pop = Population(size, sessions)
    blob_bytes = _blob_size(pop)
    store = open_memory_store()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(sessions):
            # Built inside the window so that whatever the store keeps of it is counted; the
            # runner's own references die with the next iteration (the last one below).
            ctx, data = _session(pop, i)
            await store.create_session(ctx, data)
        del ctx, data
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_session = (after - before) / sessions
    await store.aclose()
    return {
        "section": "footprint",
        "backend": "memory",
        "size": size,
        "sessions": sessions,
        "blob_bytes": blob_bytes,
        "bytes_per_session": per_session,
        "overhead_bytes": per_session - blob_bytes,
        "method": "tracemalloc",
    }


async def _used_memory(client: aioredis.Redis) -> int:
    info: dict[str, Any] = await client.info("memory")
    return int(info["used_memory"])


async def redis_footprint(
    url: str, size: int, sessions: int, *, run_id: str, tick: Callable[[], None]
) -> dict[str, Any]:
    pop = Population(size, sessions)
    blob_bytes = _blob_size(pop)
    namespace = f"bench:{run_id}:footprint:{size}"
    store = open_redis_store(url, namespace)
    client = store.client
    try:
        before = await _used_memory(client)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < sessions:
                i = next_index
                next_index += 1
                await store.create_session(*_session(pop, i))

        await asyncio.gather(*(worker() for _ in range(64)))
        tick()
        after = await _used_memory(client)
    finally:
        await delete_namespace(client, namespace)
        await store.aclose()
    per_session = (after - before) / sessions
    return {
        "section": "footprint",
        "backend": "redis",
        "size": size,
        "sessions": sessions,
        "blob_bytes": blob_bytes,
        "bytes_per_session": per_session,
        "overhead_bytes": per_session - blob_bytes,
        "method": "INFO used_memory delta",
    }
