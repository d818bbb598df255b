"""The backend interface (`SessionStore`), its Redis-free configuration and the factory."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, Unpack

from .backends.options import DEFAULT_NAMESPACE, RedisOptions, RedisPoolOptions
from .schema import SessionData, SessionKey, TenantCtx

__all__ = ["SessionBackendConfig", "SessionStore", "create_session_store"]


class SessionStore(abc.ABC):
    """Persists paused flows. Every method is a coroutine; every backend obeys the same fence.

    Use as `async with store:` or call `await store.aclose()` when done.
    """

    @abc.abstractmethod
    async def create_session(self, ctx: TenantCtx, data: SessionData) -> SessionKey:
        """Store `data` under a new key and point its user's lookup slot at it."""

    @abc.abstractmethod
    async def get_session(self, key: str) -> SessionData | None:
        """The stored snapshot, or None."""

    @abc.abstractmethod
    async def update_session(self, key: str, data: SessionData) -> None:
        """Replace the snapshot; `NotFoundError` if missing; the owner cannot change."""

    @abc.abstractmethod
    async def remove_session(self, key: str) -> None:
        """Delete the snapshot and the user pointer if it still points here."""

    @abc.abstractmethod
    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        """The newest session of `user` in `ctx`'s env, tenant and team, or None."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release resources; later calls raise `UnavailableError`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


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
        from .backends.redis import RedisSessionStore

        return RedisSessionStore.from_options(config.redis)
    raise TypeError(f"unsupported session backend config: {config!r}")
