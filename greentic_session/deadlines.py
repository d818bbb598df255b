"""Durable deadlines for paused flows: `DueWait` and the rules both backends share.

A wait registered with `due_in` (seconds) has a deadline: once it has passed, a runner's
`claim_due_waits` takes the wait and leases it for `lease` seconds, during which no other claim
returns it. The runner resumes the flow with `update_session(..., expected_revision=
due.entry.revision)` (a reply that resumed it first makes that a `ConflictError`) and calls
`settle_due(due)`, which removes the deadline if `due`'s lease is still the current one. A
claimer that dies leaves its lease to run out; the wait then comes due again with `attempt` one
higher: delivery is at least once.

Time is the server's on Redis (every script reads `TIME`), the store's clock in memory. What each
backend stores: `backends/memory_due.py` (a table and a heap), `backends/redis/due.py` (a record
per wait and an index by due time). Nothing here does I/O but `watch`'s calls.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import anyio
import msgspec

from .errors import InvalidInputError
from .expiry import check_seconds
from .schema import ReplyScope, SessionKey
from .store import SessionEntry

if TYPE_CHECKING:
    from .store import SessionStore

__all__ = [
    "DEFAULT_CLAIM_LIMIT",
    "DEFAULT_LEASE",
    "DEFAULT_POLL",
    "MAX_CLAIM_LIMIT",
    "DueWait",
    "check_claim",
    "check_due",
    "check_poll",
    "due_millis",
    "jittered",
    "watch",
]

DEFAULT_CLAIM_LIMIT = 100
DEFAULT_LEASE = 30.0
DEFAULT_POLL = 1.0
# A claim's reply holds every claimed session: a bound keeps one call's reply (and the server's
# time in one script) in proportion.
MAX_CLAIM_LIMIT = 10_000


class DueWait(msgspec.Struct, frozen=True):
    """A wait whose deadline passed, as a claim leased it.

    `scope` is the `ReplyScope` it was registered with; `entry` the session (data and revision)
    at the claim; `due_at` its deadline in seconds since the epoch (in memory: on the store's
    clock, shifted to the epoch when the store was made); `attempt` 1 on the first delivery, one
    more each time a lease ran out; `lease_id` names this lease for `settle_due`.
    """

    key: SessionKey
    user_id: str
    scope: ReplyScope
    entry: SessionEntry
    due_at: float
    attempt: int
    lease_id: str


def due_millis(due_in: object, ttl_ms: int | None) -> int | None:
    """`due_in` seconds as whole milliseconds (rounded up: a deadline never fires early), or None
    for no deadline. It must be shorter than the wait's lifetime (`ttl_ms`, None: unbounded), so
    the deadline can fire while the wait still exists."""
    seconds = check_seconds(due_in, "due_in")
    if seconds is None:
        return None
    millis = max(1, math.ceil(seconds * 1000))
    if ttl_ms is not None and millis >= ttl_ms:
        raise InvalidInputError(
            "due_in must be shorter than the wait's ttl (or, without one, the store's idle_ttl)"
        )
    return millis


def check_claim(limit: object, lease: object) -> tuple[int, int]:
    """A claim's `limit` (an int from 1 to MAX_CLAIM_LIMIT) and `lease` (seconds, as whole
    milliseconds rounded up)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM_LIMIT:
        raise InvalidInputError(f"limit must be an int from 1 to {MAX_CLAIM_LIMIT}")
    seconds = check_seconds(lease, "lease")
    if seconds is None:
        raise InvalidInputError("lease must be a finite number of seconds")
    return limit, max(1, math.ceil(seconds * 1000))


def check_due(due: object) -> DueWait:
    """`settle_due`'s argument: a `DueWait` a claim returned."""
    if not isinstance(due, DueWait):
        raise InvalidInputError(f"due must be a DueWait, not {type(due).__name__}")
    if not isinstance(due.lease_id, str) or not due.lease_id:
        raise InvalidInputError("due.lease_id must be the non-empty str a claim returned")
    if not isinstance(due.key, str) or not due.key:
        raise InvalidInputError("due.key must be the non-empty str a claim returned")
    return due


def check_poll(poll: object) -> float:
    seconds = check_seconds(poll, "poll")
    if seconds is None:
        raise InvalidInputError("poll must be a finite number of seconds")
    return seconds


def jittered(poll: float) -> float:
    """A pause of `poll` seconds on average, spread over [poll/2, 3*poll/2): runners that started
    together drift apart instead of claiming in lockstep."""
    return poll * random.uniform(0.5, 1.5)


async def watch(
    store: SessionStore, limit: int, lease: float, poll: float
) -> AsyncGenerator[DueWait, None]:
    """`SessionStore.watch_due_waits`'s loop (arguments already checked): claim, hand out each
    wait, and pause (jittered) only when a claim came back short, so a backlog drains at full
    speed. A claim's error ends the iteration with it; so does `aclose`. Waits claimed but not
    yet handed out when the consumer stops come back when their lease runs out."""
    while True:
        claimed = await store.claim_due_waits(limit=limit, lease=lease)
        for due in claimed:
            yield due
        if len(claimed) < limit:
            await anyio.sleep(jittered(poll))
