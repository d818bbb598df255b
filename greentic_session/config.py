"""Which backend to build (`SessionBackendConfig`) and the factory that builds it.

Redis-free: only building a Redis store imports the Redis backend (and so redis-py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Unpack

from .backends.redis.options import (
    DEFAULT_NAMESPACE,
    RedisClusterOptions,
    RedisOptions,
    RedisPoolOptions,
    RedisSentinelOptions,
    is_sentinel_url,
)
from .expiry import Expiry
from .limits import DEFAULT_MAX_BLOB_BYTES, check_max_blob_bytes
from .store import SessionStore, StoreOptions

__all__ = ["SessionBackendConfig", "create_session_store"]


@dataclass(frozen=True, slots=True)
class SessionBackendConfig:
    """Which backend to build, without importing it. Build with the classmethods."""

    kind: Literal["memory", "redis"]
    redis: RedisOptions | RedisSentinelOptions | RedisClusterOptions | None = None
    store: StoreOptions = field(default_factory=StoreOptions)

    def __post_init__(self) -> None:
        # Checked now, so a bad option fails where the config is written, not at first use.
        Expiry(self.store.get("idle_ttl"), self.store.get("max_lifetime"))
        check_max_blob_bytes(self.store.get("max_blob_bytes"))

    @classmethod
    def in_memory(cls, **store: Unpack[StoreOptions]) -> SessionBackendConfig:
        """The in-memory store; `store` options: idle_ttl, max_lifetime, max_blob_bytes."""
        return cls("memory", store=store)

    @classmethod
    def redis_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> SessionBackendConfig:
        """Redis at `url` (`redis://`, `rediss://` or `unix://`); checked now, connected lazily.

        A `redis+sentinel://` (or `rediss+sentinel://`) URL reaches a Sentinel-monitored primary
        instead: see `RedisSentinelOptions.from_url` and `redis_sentinel`.
        `options` are `RedisOptions` fields: max_connections, connect_timeout, socket_timeout,
        pool_timeout, tls_ca_file. `idle_ttl`, `max_lifetime` (seconds) and `max_blob_bytes`
        are the `StoreOptions` every backend takes.
        """
        store = StoreOptions(
            idle_ttl=idle_ttl, max_lifetime=max_lifetime, max_blob_bytes=max_blob_bytes
        )
        if is_sentinel_url(url):
            sentinel = RedisSentinelOptions.from_url(url, namespace=namespace, **options)
            return cls("redis", sentinel, store)
        return cls("redis", RedisOptions(url=url, namespace=namespace, **options), store)

    @classmethod
    def redis_sentinel(
        cls,
        sentinel_urls: Sequence[str],
        service_name: str,
        *,
        db: int = 0,
        namespace: str = DEFAULT_NAMESPACE,
        username: str | None = None,
        password: str | None = None,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> SessionBackendConfig:
        """The primary Sentinel monitors as `service_name`; checked now, connected lazily.

        `sentinel_urls` are `redis://[user:password@]host[:port]` (or `rediss://`, TLS for the
        sentinels and the data nodes) and carry the sentinels' credentials; `username` and
        `password` authenticate to the data nodes. Replicas are never read. Other options as in
        `redis_url`.
        """
        store = StoreOptions(
            idle_ttl=idle_ttl, max_lifetime=max_lifetime, max_blob_bytes=max_blob_bytes
        )
        sentinel = RedisSentinelOptions.from_sentinel_urls(
            sentinel_urls,
            service_name,
            db=db,
            username=username,
            password=password,
            namespace=namespace,
            **options,
        )
        return cls("redis", sentinel, store)

    @classmethod
    def redis_cluster(
        cls,
        startup_urls: Sequence[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> SessionBackendConfig:
        """A Redis Cluster reached through any of `startup_urls` (`redis://` or `rediss://`
        node URLs with the same credentials); checked now, connected lazily.

        Keys use the cluster layout (hash tags, see docs/guides/redis-cluster.md), not the
        single-node layout a Rust runner shares; the namespace may not hold `{` or `}`. Options
        as in `redis_url`, per master.
        """
        store = StoreOptions(
            idle_ttl=idle_ttl, max_lifetime=max_lifetime, max_blob_bytes=max_blob_bytes
        )
        cluster = RedisClusterOptions(tuple(startup_urls), namespace=namespace, **options)
        return cls("redis", cluster, store)


def create_session_store(config: SessionBackendConfig) -> SessionStore:
    """Build the store `config` describes. Only the Redis kind imports redis."""
    if config.kind == "memory":
        from .backends.memory import InMemorySessionStore

        return InMemorySessionStore(**config.store)
    if config.kind == "redis" and config.redis is not None:
        from .backends.redis.store import RedisSessionStore

        return RedisSessionStore.from_options(config.redis, **config.store)
    raise TypeError(f"unsupported session backend config: {config!r}")
