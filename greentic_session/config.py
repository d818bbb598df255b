"""Which backend to build (`SessionBackendConfig`) and the factory that builds it.

Redis-free: only building a Redis store imports the Redis backend (and so redis-py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Unpack

from .backends.redis.options import DEFAULT_NAMESPACE, RedisOptions, RedisPoolOptions
from .store import SessionStore

__all__ = ["SessionBackendConfig", "create_session_store"]


@dataclass(frozen=True, slots=True)
class SessionBackendConfig:
    """Which backend to build, without importing it. Build with the classmethods."""

    kind: Literal["memory", "redis"]
    redis: RedisOptions | None = None

    @classmethod
    def in_memory(cls) -> SessionBackendConfig:
        return cls("memory")

    @classmethod
    def redis_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        **options: Unpack[RedisPoolOptions],
    ) -> SessionBackendConfig:
        """Redis at `url` (`redis://`, `rediss://` or `unix://`); checked now, connected lazily.

        `options` are `RedisOptions` fields: max_connections, connect_timeout, socket_timeout,
        pool_timeout, tls_ca_file.
        """
        return cls("redis", RedisOptions(url=url, namespace=namespace, **options))


def create_session_store(config: SessionBackendConfig) -> SessionStore:
    """Build the store `config` describes. Only the Redis kind imports redis."""
    if config.kind == "memory":
        from .backends.memory import InMemorySessionStore

        return InMemorySessionStore()
    if config.kind == "redis" and config.redis is not None:
        from .backends.redis.store import RedisSessionStore

        return RedisSessionStore.from_options(config.redis)
    raise TypeError(f"unsupported session backend config: {config!r}")
