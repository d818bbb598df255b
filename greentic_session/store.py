"""The backend interface: `SessionStore`, the contract every backend obeys, and `SessionEntry`."""

from __future__ import annotations

import abc
import inspect
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TypedDict

import anyio
import msgspec

from .errors import ConflictError, InvalidInputError, NotFoundError
from .schema import ReplyScope, SessionData, SessionKey, TenantCtx
from .sealing import Encryption  # at run time too: typing.get_type_hints(StoreOptions)

if TYPE_CHECKING:
    from .deadlines import DueWait

__all__ = [
    "DEFAULT_UPDATE_ATTEMPTS",
    "SessionBuilder",
    "SessionChange",
    "SessionEntry",
    "SessionStore",
    "StoreOptions",
]

DEFAULT_UPDATE_ATTEMPTS = 5

# update_with's pause before attempt n+1 is a random share of min(_BACKOFF_CAP, _BACKOFF * 2**n):
# "full jitter", so writers that collided once do not collide again in lockstep.
_BACKOFF = 0.002
_BACKOFF_CAP = 0.05

SessionChange = Callable[[SessionData], SessionData | Awaitable[SessionData]]
"""What `update_with` applies: a plain or async callable from the stored data to the new data."""

SessionBuilder = Callable[[], SessionData | Awaitable[SessionData]]


class StoreOptions(TypedDict, total=False):
    """What every backend's constructor (and `SessionBackendConfig`) accepts besides its own
    connection options: `idle_ttl` and `max_lifetime` in seconds (`expiry`), `max_blob_bytes`
    (`limits`, counted on the uncompressed encoding), and sealing at rest (`sealing`):
    `encryption` (an `Encryption` key ring) and `compression` ("zstd")."""

    idle_ttl: float | None
    max_lifetime: float | None
    max_blob_bytes: int | None
    encryption: Encryption | None
    compression: Literal["zstd"] | None


class SessionEntry(msgspec.Struct, frozen=True):
    """A stored session with its revision.

    `revision` is opaque: it changes whenever the stored session changes (in Redis, whenever the
    stored bytes change, whoever wrote them), and `update_session(..., expected_revision=...)`
    writes only while the session still has it.
    """

    key: SessionKey
    data: SessionData
    revision: str


async def resolve(value: SessionData | Awaitable[SessionData]) -> SessionData:
    """A change's or builder's result, awaited when it is awaitable (plain or async callables)."""
    return await value if inspect.isawaitable(value) else value


class SessionStore(abc.ABC):
    """Persists paused flows. Every method is a coroutine; every backend obeys the same fence.

    Use as `async with store:` or call `await store.aclose()` when done.
    """

    @abc.abstractmethod
    async def create_session(
        self, ctx: TenantCtx, data: SessionData, *, key: str | None = None
    ) -> SessionKey:
        """Store `data` and point its user's lookup slot at it.

        Without `key` the session gets a new random key; with one (a `mapping` helper's, say) it
        is created only if no live session has that key, else `ConflictError`.
        """

    def session_key_for(self, ctx: TenantCtx, user_id: str, key: str) -> SessionKey:
        """`key` (a `mapping` helper's, say) as the key of a session of `user_id` in `ctx`'s
        env, tenant and team. Unchanged except on a Redis Cluster, where it gains the user's hash
        tag, so the session, its user pointer and its waits share one slot and every call on it
        stays one atomic step (a wait's key there must be built this way). Use it for caller-
        chosen keys when the store may be a cluster."""
        if not isinstance(key, str) or not key:
            raise InvalidInputError("session key must be a non-empty str")
        return SessionKey(key)

    @abc.abstractmethod
    async def get_session(self, key: str) -> SessionData | None:
        """The stored snapshot, or None."""

    @abc.abstractmethod
    async def get_entry(self, key: str) -> SessionEntry | None:
        """The stored snapshot with its revision, or None."""

    @abc.abstractmethod
    async def update_session(
        self, key: str, data: SessionData, *, expected_revision: str | None = None
    ) -> None:
        """Replace the snapshot; `NotFoundError` if missing; the owner cannot change.

        With `expected_revision`, write only if the stored session still has that revision,
        else `ConflictError` (and nothing is written).
        """

    @abc.abstractmethod
    async def touch_session(self, key: str) -> None:
        """Restart the session's idle clock (see `expiry`); `NotFoundError` if missing."""

    @abc.abstractmethod
    async def remove_session(self, key: str) -> None:
        """Delete the snapshot and the user pointer if it still points here."""

    @abc.abstractmethod
    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        """The newest session of `user` in `ctx`'s env, tenant and team, or None."""

    @abc.abstractmethod
    async def find_entry(self, ctx: TenantCtx, user: str) -> SessionEntry | None:
        """`find_by_user` with the session's revision."""

    @abc.abstractmethod
    async def find_or_create(
        self, ctx: TenantCtx, user: str, build: SessionBuilder
    ) -> tuple[SessionEntry, bool]:
        """The user's live session, or a new one from `build()`; True when this call created it.

        Finding is a read: `build` is not called and the idle clock does not restart. A built
        session is fenced like `create_session` and pointed at by `user`; `ctx`'s user, when
        set, must be `user`. Atomic per user slot: concurrent calls for one user create one
        session and all return it.
        """

    @abc.abstractmethod
    async def erase_user(self, ctx: TenantCtx, user_id: str) -> int:
        """Delete every session owned by `user_id` in `ctx`'s env, tenant and team (its data's
        user is `user_id`), whether or not a pointer still names it, with every pointer, wait
        index, hint, expiry meta key and deadline that names them, and the user's own pointer
        and wait keys; return how many sessions it deleted. The same user id in another env,
        tenant or team is untouched.

        An operator context (no user) may erase any user of its env, tenant and team; a context
        with a user only itself (another user is `InvalidInputError`, the fence's refusal).
        Sessions that have no user in their data are not the user's and stay.

        Cost: in memory, one pass over every session under the lock. On Redis, a SCAN of the
        namespace's session blobs (on a cluster, on every master) and one script per blob
        found: O(sessions in the namespace) server work, whatever the user holds; meant for
        data-protection requests, not a hot path. Each session is checked and deleted in one
        atomic step, so a session re-created meanwhile under a key by another owner is kept; a
        session the user creates while the erase runs may survive it. A sealed session under a
        key id the store's ring lacks cannot be judged (`sealing`): the erase deletes all else,
        then raises `InternalError` naming those key ids.
        """

    async def _read_for_update(self, key: str) -> tuple[SessionEntry, object] | None:
        """update_with's read: the entry and the token `_compare_and_set` checks (by default
        the revision; a backend may hand itself something cheaper to compare)."""
        entry = await self.get_entry(key)
        return None if entry is None else (entry, entry.revision)

    @abc.abstractmethod
    async def register_wait(
        self,
        ctx: TenantCtx,
        user_id: str,
        scope: ReplyScope,
        session_key: str,
        data: SessionData,
        *,
        ttl: float | None = None,
        due_in: float | None = None,
    ) -> None:
        """Store `data` under `session_key` as `user_id`'s wait for replies in `scope`.

        `ctx`'s user, `user_id` and the data's user must agree, and env, tenant and team match
        (`InvalidInputError`). A session already stored under the key must have the same owner.
        `ttl` (seconds) bounds the wait; None means the store's `idle_ttl`, else no expiry. A
        wait registered earlier for the same scope stops being a wait (its session stays).

        `due_in` (seconds, shorter than that ttl) gives the wait a deadline: after it,
        `claim_due_waits` hands the wait out (see `deadlines`). Registering again replaces the
        deadline (None removes it); `clear_wait` and `remove_session` remove it; updates and
        touches keep it.
        """

    @abc.abstractmethod
    async def claim_due_waits(self, *, limit: int = 100, lease: float = 30.0) -> list[DueWait]:
        """Atomically claim up to `limit` waits whose deadline has passed, in every tenant of
        the store, and lease them for `lease` seconds: no other claim returns them before the
        lease ends. Changes neither the sessions nor their revisions. A deadline whose wait is
        gone (cleared, expired, replaced) is dropped, never returned."""

    @abc.abstractmethod
    async def settle_due(self, due: DueWait) -> bool:
        """Remove `due`'s deadline if its lease is still the current one and the wait still
        exists: True. False when the lease ran out and another claim took it, or the wait was
        cleared or registered again meanwhile. Never touches the wait itself."""

    def watch_due_waits(
        self, *, limit: int = 100, lease: float = 30.0, poll: float = 1.0
    ) -> AsyncGenerator[DueWait, None]:
        """Claimed `DueWait`s as they come due: claims `limit` at a time, pausing about `poll`
        seconds (jittered) whenever a claim comes back short. Ends on `aclose` (or when the
        consuming task is cancelled); a claim's error ends it with that error."""
        from .deadlines import check_claim, check_poll, watch

        check_claim(limit, lease)
        return watch(self, limit, lease, check_poll(poll))

    @abc.abstractmethod
    async def find_wait_by_scope(
        self, ctx: TenantCtx, user_id: str, scope: ReplyScope
    ) -> SessionKey | None:
        """The key of `user_id`'s live wait for `scope`, or None."""

    @abc.abstractmethod
    async def list_waits_for_user(self, ctx: TenantCtx, user_id: str) -> list[SessionKey]:
        """The keys of `user_id`'s live waits, in no particular order."""

    @abc.abstractmethod
    async def clear_wait(self, ctx: TenantCtx, user_id: str, scope: ReplyScope) -> None:
        """Finish `user_id`'s wait for `scope`: delete its session and every index naming it.

        Does nothing when there is no such wait; never deletes a session someone else owns.
        """

    @abc.abstractmethod
    async def _compare_and_set(self, key: str, data: SessionData, token: object) -> str:
        """Write `data` if the session is still as `_read_for_update` saw it (`token`); return
        the new revision."""

    async def update_with(
        self, key: str, change: SessionChange, *, attempts: int = DEFAULT_UPDATE_ATTEMPTS
    ) -> SessionEntry:
        """Read the session, apply `change` to its data, and write the result if nobody wrote
        in between; on a conflict, pause briefly (jittered) and try again.

        `attempts` counts tries. Raises `ConflictError` after the last one, and `NotFoundError`
        when the session is gone (`change` is then not called).
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidInputError("attempts must be an int of at least 1")
        for attempt in range(attempts):
            read = await self._read_for_update(key)
            if read is None:
                raise NotFoundError(f"session {key!r} not found")
            entry, token = read
            data = await resolve(change(entry.data))
            try:
                revision = await self._compare_and_set(key, data, token)
            except ConflictError:
                if attempt + 1 == attempts:
                    raise
                await anyio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF * 2**attempt)))
                continue
            return SessionEntry(entry.key, data, revision)
        raise AssertionError("unreachable")  # pragma: no cover

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
