"""Which backend to build (`SessionBackendConfig`) and the factory that builds it.

Redis-free: only building a Redis store imports the Redis backend (and so redis-py), whose
`factory` builds every Redis store, those of `RedisSessionStore.from_*` included, from a config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Unpack

from .backends.redis.options import (
    RedisClusterOptions,
    RedisOptions,
    RedisSentinelOptions,
    RedisStoreOptions,
    options_for_url,
    split_store_options,
)
from .errors import InvalidInputError
from .expiry import Expiry
from .limits import check_max_blob_bytes
from .sealing import check_sealing
from .store import SessionStore, StoreOptions

__all__ = ["SessionBackendConfig", "create_session_store"]

_STORE_OPTIONS = frozenset(StoreOptions.__annotations__)


@dataclass(frozen=True, slots=True)
class SessionBackendConfig:
    """Which backend to build, without importing it. Build with the classmethods.

    Checked when built: a memory config carries no Redis options, a Redis config carries its
    options (`RedisOptions`, `RedisSentinelOptions` or `RedisClusterOptions`), and `store` holds
    only `StoreOptions`, each valid.
    """

    kind: Literal["memory", "redis"]
    redis: RedisOptions | RedisSentinelOptions | RedisClusterOptions | None = None
    store: StoreOptions = field(default_factory=StoreOptions)

    def __post_init__(self) -> None:
        # Checked now, so a bad option fails where the config is written, not at first use.
        if self.kind == "memory":
            if self.redis is not None:
                raise InvalidInputError(
                    "an in-memory config takes no Redis options: use SessionBackendConfig."
                    "redis_url (or redis_sentinel, redis_cluster) for Redis"
                )
        elif self.kind == "redis":
            if not isinstance(
                self.redis, RedisOptions | RedisSentinelOptions | RedisClusterOptions
            ):
                raise TypeError(
                    "a Redis config needs RedisOptions, RedisSentinelOptions or "
                    "RedisClusterOptions: build it with SessionBackendConfig.redis_url"
                )
        else:
            raise TypeError(f"unsupported session backend kind: {self.kind!r}")
        if not isinstance(self.store, Mapping):
            raise InvalidInputError("store options must be a dict of StoreOptions")
        unknown = sorted(name for name in self.store if name not in _STORE_OPTIONS)
        if unknown:
            raise InvalidInputError(
                f"{', '.join(map(repr, unknown))}: not a store option (store options are "
                f"{', '.join(sorted(_STORE_OPTIONS))}; Redis options go with a Redis config)"
            )
        Expiry(self.store.get("idle_ttl"), self.store.get("max_lifetime"))
        check_max_blob_bytes(self.store.get("max_blob_bytes"))
        check_sealing(self.store.get("encryption"), self.store.get("compression"))

    @classmethod
    def in_memory(cls, **store: Unpack[StoreOptions]) -> SessionBackendConfig:
        """The in-memory store; `store` options: idle_ttl, max_lifetime, max_blob_bytes,
        encryption, compression."""
        return cls("memory", store=store)

    @classmethod
    def redis_url(cls, url: str, **options: Unpack[RedisStoreOptions]) -> SessionBackendConfig:
        """Redis at `url` (`redis://`, `rediss://` or `unix://`); checked now, connected lazily.

        A `redis+sentinel://` (or `rediss+sentinel://`) URL reaches a Sentinel-monitored primary
        instead (see `RedisSentinelOptions.from_url` and `redis_sentinel`), and a
        `redis+cluster://host1:port,host2:port` (or `rediss+cluster://`) URL a Redis Cluster
        (see `RedisClusterOptions.from_url` and `redis_cluster`).
        `options` (`RedisStoreOptions`): the `namespace`; the pool's, as `RedisPoolOptions`:
        max_connections, connect_timeout, socket_timeout, pool_timeout, tls_ca_file, batching;
        and `idle_ttl`, `max_lifetime` (seconds), `max_blob_bytes`, `encryption` and
        `compression`, the `StoreOptions` every backend takes.
        """
        namespace, pool, store = split_store_options(options)
        return cls("redis", options_for_url(url, namespace=namespace, **pool), store)

    @classmethod
    def redis_sentinel(
        cls,
        sentinel_urls: Sequence[str],
        service_name: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        **options: Unpack[RedisStoreOptions],
    ) -> SessionBackendConfig:
        """The primary Sentinel monitors as `service_name`; checked now, connected lazily.

        `sentinel_urls` are `redis://[user:password@]host[:port]` (or `rediss://`, TLS for the
        sentinels and the data nodes) and carry the sentinels' credentials; `username` and
        `password` authenticate to the data nodes. Replicas are never read. Other options as in
        `redis_url`.
        """
        namespace, pool, store = split_store_options(options)
        sentinel = RedisSentinelOptions.from_sentinel_urls(
            sentinel_urls,
            service_name,
            db=db,
            username=username,
            password=password,
            namespace=namespace,
            **pool,
        )
        return cls("redis", sentinel, store)

    @classmethod
    def redis_cluster(
        cls, startup_urls: Sequence[str], **options: Unpack[RedisStoreOptions]
    ) -> SessionBackendConfig:
        """A Redis Cluster reached through any of `startup_urls` (`redis://` or `rediss://`
        node URLs with the same credentials); checked now, connected lazily. One
        `redis+cluster://` URL names the same to `redis_url`.

        Keys use the cluster layout (hash tags, see docs/guides/redis-cluster.md), not the
        single-node layout a Rust runner shares; the namespace may not hold `{` or `}`. Options
        as in `redis_url`, per master.
        """
        namespace, pool, store = split_store_options(options)
        cluster = RedisClusterOptions(tuple(startup_urls), namespace=namespace, **pool)
        return cls("redis", cluster, store)


def create_session_store(config: SessionBackendConfig) -> SessionStore:
    """Build the store `config` describes. Only the Redis kind imports redis."""
    if config.kind == "memory":
        from .backends.memory import InMemorySessionStore

        return InMemorySessionStore(**config.store)
    # Without redis-py this import raises the ImportError that names the extra.
    from .backends.redis.store import RedisSessionStore

    if config.redis is None:  # refused when the config was built; here for the type checker
        raise TypeError(f"unsupported session backend config: {config!r}")
    return RedisSessionStore.from_options(config.redis, **config.store)
