"""The backend interface: `SessionStore`, the contract every backend obeys."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

from .schema import SessionData, SessionKey, TenantCtx

__all__ = ["SessionStore"]


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
