"""Opening a Redis store in a test that opens its own (with options of its choosing, or on a
server or cluster of its own) rather than taking the `store` fixture."""

from __future__ import annotations

from typing import Any

from greentic_session import RedisSessionStore
from greentic_session.testing import BACKENDS, Backend, LocalCluster

_ROWS = {row.id: row for row in BACKENDS}
BATCHED: Backend = _ROWS["redis"]  # one server, calls auto-pipelined: the store's default
UNBATCHED: Backend = _ROWS["redis-unbatched"]  # one server, redis-py's pool
CLUSTER: Backend = _ROWS["cluster"]


def open_store(
    at: str | LocalCluster, namespace: str, backend: Backend | None = None, **options: Any
) -> RedisSessionStore:
    """A Redis store in `namespace` with `options` (`StoreOptions` and the pool's
    `RedisPoolOptions` but `batching`, which is the row's), at a server's URL as `backend`'s row
    opens it (BATCHED unless told), or on a `LocalCluster` through the nodes it started that run
    now (after a failover, not all of them). Close it with `async with` or `aclose()`."""
    if isinstance(at, LocalCluster):
        assert backend in (None, CLUSTER), "a LocalCluster opens as the cluster row"
        url, row = ",".join(at.startup_urls), CLUSTER
    else:
        url, row = at, backend or BATCHED
    store = row.open(redis_url=url, namespace=namespace, **options)
    assert isinstance(store, RedisSessionStore)
    return store
