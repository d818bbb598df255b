"""A cluster's two-step path for a caller's key: calls on a key whose user indexes may live in
another slot than its blob (an untagged key of the caller's, `keys.RedisKeys.local_only`).

Such a call runs its session step (a script on the blob's slot), then, given that step's result,
its index step on the user pointer's slot: create writes the pointer once the session exists,
update and touch give the pointer the session's new TTL if it still names the session, and a
lookup whose pointer names a session in another slot reads the blob there. The two steps run as
one task that a cancelled caller does not stop half way, and a failed index step after a session
step that ran is an unknown outcome for the call as a whole, never a plain refusal. Everything
else (a store's minted keys, keys built with `session_key_for`, any single node) is one step.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ...errors import SessionError, UnknownOutcomeError
from ...fence import UserSlot
from .caller import Caller
from .keys import RedisKeys
from .replies import CreateReply, FoundBlob, pointer_plan, text
from .scripts import Scripts, refresh_pointer_call

__all__ = ["SplitSteps", "in_order"]

T = TypeVar("T")


def _unawaited(task: asyncio.Future[Any]) -> None:
    """Mark a finished two-step task's failure as retrieved: its caller got it, or was cancelled
    and left (then asyncio would only log it, with its chain, at garbage collection)."""
    if not task.cancelled():
        task.exception()


async def in_order(first: Awaitable[T], then: Callable[[T], Awaitable[None]]) -> T:
    """A split call's session step, then (given its result) its index step, run as one task
    that a cancelled caller does not stop half way: the index step always follows a session
    step that ran (the caller still sees its cancellation)."""

    async def both() -> T:
        result = await first
        await then(result)
        return result

    task = asyncio.ensure_future(both())
    task.add_done_callback(_unawaited)
    return await asyncio.shield(task)


class SplitSteps:
    """The index steps of a store's split calls, on its caller, keys and scripts."""

    def __init__(self, caller: Caller, keys: RedisKeys, scripts: Scripts, pointer_ttl: str) -> None:
        self._caller = caller
        self._keys = keys
        self._scripts = scripts
        # The pointer's TTL (ms) when a create writes it in a step of its own; '' for none.
        self._pointer_ttl = pointer_ttl

    def create(self, step: Awaitable[T], slot: UserSlot, key: str) -> Coroutine[Any, Any, T]:
        """create.lua's step, then the user pointer once the session exists."""
        return in_order(step, functools.partial(self._point, slot, key))

    def write(self, step: Awaitable[T], key: str) -> Coroutine[Any, Any, T]:
        """update.lua's step, then the pointer's new TTL."""
        return in_order(step, functools.partial(self._refresh_pointer, key, "written"))

    def touch(self, step: Awaitable[T], key: str) -> Coroutine[Any, Any, T]:
        """touch.lua's step, then the pointer's new TTL."""
        return in_order(step, functools.partial(self._refresh_pointer, key, "touched"))

    async def read_elsewhere(self, found: Any) -> Any:
        """find.lua's or create_for_user.lua's reply, with the blob of a session they name in
        another cluster slot (`FoundBlob.IN_OTHER_SLOT`) read there, as a second step."""
        if isinstance(found, list) and found[1] == FoundBlob.IN_OTHER_SLOT:
            key = text(found[0])
            found[1] = await self._caller.execute("GET", self._keys.session(key), key=key)
        return found

    async def _point(self, slot: UserSlot, key: str, created: object) -> None:
        """A split create's second step: the user pointer, once the session exists."""
        if created == CreateReply.CREATED:
            ttl = ("PX", self._pointer_ttl) if self._pointer_ttl else ()
            step = self._caller.execute("SET", self._keys.user(slot), key, *ttl, write=True)
            await self._second_step("created", key, step)

    async def _refresh_pointer(self, key: str, done: str, reply: object) -> None:
        """The second step of an update or touch: the pointer gets the session's new TTL if it
        still names the session (`reply` is the first step's: `replies.pointer_plan`)."""
        plan = pointer_plan(reply)
        if plan is not None:
            suffix, ttl = plan
            keys, args = refresh_pointer_call(self._keys.user_of_suffix(suffix), key, ttl)
            step = self._caller.eval(self._scripts.REFRESH_POINTER, keys, args, write=True, key=key)
            await self._second_step(done, key, step)

    @staticmethod
    async def _second_step(done: str, key: str, step: Awaitable[object]) -> None:
        """The index step, after the session step succeeded: a failure here is an unknown
        outcome for the call as a whole (the session was `done`), never a plain refusal."""
        failure: SessionError | None = None
        try:
            await step
        except SessionError as exc:
            failure = exc
        if failure is not None:
            raise UnknownOutcomeError(
                f"session {key!r} was {done}, but updating its user pointer in another cluster "
                f"slot failed ({failure.code.value}); the pointer may be missing or outdated"
            )
