"""Case 5: bytes per session, for N sessions of N distinct users, beside the encoded blob size.

- in-memory: `tracemalloc` traced bytes before and after `create_session` N times (the callers'
  `SessionData` objects are built before tracing starts and are not the store's);
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

from .cases_memory import open_memory_store
from .cases_redis import delete_namespace, open_redis_store
from .payloads import Population

__all__ = ["memory_footprint", "redis_footprint"]


async def memory_footprint(size: int, sessions: int) -> dict[str, Any]:
    pop = Population(size, sessions)
    pairs = list(zip(pop.ctxs, pop.datas, strict=True))
    blob_bytes = pop.blob_size
    store = open_memory_store()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for ctx, data in pairs:
            await store.create_session(ctx, data)
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
                await store.create_session(pop.ctxs[i], pop.datas[i])

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
        "blob_bytes": pop.blob_size,
        "bytes_per_session": per_session,
        "overhead_bytes": per_session - pop.blob_size,
        "method": "INFO used_memory delta",
    }
