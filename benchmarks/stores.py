"""Opening a benchmark's Redis store and cleaning up after it (no aiogram: shared by cases that
run without the peers)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from greentic_session.backends.redis import RedisSessionStore
from greentic_session.testing import BACKENDS

__all__ = ["delete_namespace", "open_redis_store"]


def open_redis_store(
    url: str, namespace: str, backend_id: str = "redis", **options: Any
) -> RedisSessionStore:
    """A Redis store exactly as the tests open it: a row of the shared backend table ("redis",
    batched, the default; "redis-unbatched", redis-py's pool)."""
    backend = next(b for b in BACKENDS if b.id == backend_id)
    store = backend.open(redis_url=url, namespace=namespace, **options)
    if not isinstance(store, RedisSessionStore):
        raise TypeError(f"backend table gave {type(store).__name__}, not RedisSessionStore")
    return store


async def delete_namespace(client: aioredis.Redis, namespace: str) -> int:
    """UNLINK every key under `namespace:` (SCAN, never FLUSHALL)."""
    removed = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{namespace}:*", count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            removed += await client.unlink(*batch)
            batch.clear()
    if batch:
        removed += await client.unlink(*batch)
    return removed
