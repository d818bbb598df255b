"""Session expiry: the options and the one rule both backends apply.

A store may have an `idle_ttl` (seconds; every create, update and touch restarts it) and a
`max_lifetime` (seconds from creation; nothing extends a session past it). A session written at
`now` and created at `created` expires at

    min(now + idle_ttl, created + max_lifetime)

leaving out whichever option is off, and is expired from that instant on: a write or touch at
or after `created + max_lifetime` finds the session gone, so nothing extends a session past its
lifetime, whatever the millisecond. Reads never extend a session. Both options default to None:
no expiry, as in the Rust crate; each is at most `MAX_SECONDS`.

The in-memory backend evaluates `Expiry.deadline` against its clock. The Redis backend hands the
two values to its Lua scripts (`as_millis`), which apply the same rule with the server's clock
(`lua/expiry.lua`): `created + max_lifetime` is when the session's meta key expires (set once at
creation), and every expiry a script gives the blob is an absolute time no later than that, so
the blob never outlives its meta key. A blob found without a meta key has no recorded creation (a
Rust runner or a store without `max_lifetime` wrote it): its lifetime starts at this store's
first write, but ends no later than the expiry the blob already has, if any (a Rust wait's ttl,
or a meta key lost before its blob), so a write never moves an expiry later than the rule allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidInputError

__all__ = ["MAX_SECONDS", "NO_EXPIRY", "Expiry", "check_seconds"]

# The longest option or ttl (some 31,700 years). The Lua scripts count expiry times in doubles,
# exact only up to 2**53 ms: past that a deadline is off by a few ms, and from 1e17 ms Redis 7.0
# passes it as "1e+17", which PXAT refuses (every write would fail on Redis, not in memory).
MAX_SECONDS = 10**12


def check_seconds(value: object, what: str) -> float | None:
    """`value` as positive finite seconds up to MAX_SECONDS, or None; anything else is
    `InvalidInputError`."""
    if value is None:
        return None
    # `not value <= MAX_SECONDS` refuses NaN and infinity too, and, unlike math.isfinite, an int
    # past a float's range (OverflowError).
    if isinstance(value, bool) or not isinstance(value, int | float) or not value <= MAX_SECONDS:
        raise InvalidInputError(f"{what} must be a number of seconds up to 10**12, or None")
    if value <= 0:
        raise InvalidInputError(f"{what} must be greater than zero")
    return float(value)


def _millis(seconds: float | None) -> str:
    # Redis TTLs are whole milliseconds: round up, so a session never expires early.
    return "" if seconds is None else str(max(1, math.ceil(seconds * 1000)))


@dataclass(frozen=True, slots=True)
class Expiry:
    """A store's expiry options (see the module docstring); validated on construction."""

    idle_ttl: float | None = None
    max_lifetime: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "idle_ttl", check_seconds(self.idle_ttl, "idle_ttl"))
        object.__setattr__(self, "max_lifetime", check_seconds(self.max_lifetime, "max_lifetime"))

    @property
    def enabled(self) -> bool:
        return self.idle_ttl is not None or self.max_lifetime is not None

    def deadline(self, *, created: float, now: float) -> float | None:
        """When a session created at `created` and written (or touched) at `now` expires."""
        idle, life = self.idle_ttl, self.max_lifetime
        if idle is None:
            return None if life is None else created + life
        if life is None:
            return now + idle
        return min(now + idle, created + life)

    def as_millis(self) -> tuple[str, str]:
        """(idle_ttl, max_lifetime) as whole milliseconds for the Lua scripts; '' when off."""
        return _millis(self.idle_ttl), _millis(self.max_lifetime)

    def first_ttl_millis(self) -> str:
        """A new session's TTL in whole milliseconds, '' when off: the shorter option, as
        expiry.lua's `expiry_start` gives the keys it writes."""
        ttls = [seconds for seconds in (self.idle_ttl, self.max_lifetime) if seconds is not None]
        return _millis(min(ttls)) if ttls else ""


NO_EXPIRY = Expiry()
