"""The tenant fence: every ownership rule, once, as small pure functions.

Backends never compare tenant contexts themselves; they call these. A session's owner is its
`Scope` (env, tenant_id, normalized team, normalized user). The user pointer lives at a
`UserSlot`, the frozen key that each backend turns into its own storage key.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .errors import InvalidInputError
from .expiry import check_seconds
from .schema import ReplyScope, SessionData, TenantCtx, validate_identifier

__all__ = [
    "FOREIGN",
    "LIVE",
    "NO_TEAM",
    "SHARED",
    "Scope",
    "UserSlot",
    "check_create",
    "check_find_or_create",
    "check_key",
    "check_register_wait",
    "check_update",
    "erase_slot",
    "lookup_slot",
    "own_slot",
    "owner_slot",
    "scope_hash_of",
    "scope_of",
    "team_of_segment",
    "team_segment",
    "visible_to",
    "wait_lookup_slot",
    "wait_segments",
    "wait_ttl_millis",
    "wait_verdict",
]


class Scope(NamedTuple):
    """The fence's view of a TenantCtx."""

    env: str
    tenant_id: str
    team: str | None
    user: str | None


class UserSlot(NamedTuple):
    """Where the pointer to a user's newest session lives."""

    env: str
    tenant_id: str
    team: str | None
    user: str


# A key's team segment for "no team" (Rust's layout). A team literally named "-" therefore
# shares its keys with "no team": see the waits below. lua/owner.lua's `team_segment` is this
# rule for the scripts.
NO_TEAM = "-"


def team_segment(team: str | None) -> str:
    """The team as a key segment: the team, or "-" for none."""
    return NO_TEAM if team is None else team


def team_of_segment(segment: str) -> str | None:
    """A key's team segment as a team: None for "-"."""
    return None if segment == NO_TEAM else segment


def scope_of(ctx: TenantCtx) -> Scope:
    return Scope(ctx.env, ctx.tenant_id, ctx.normalized_team, ctx.normalized_user)


def _require(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be {kind.__name__}, not {type(value).__name__}")


def _violation(rule: str, detail: str) -> InvalidInputError:
    return InvalidInputError(f"tenant fence ({rule}): {detail}")


def check_create(caller: TenantCtx, data: SessionData) -> tuple[Scope, UserSlot | None]:
    """Admit `data` for creation by `caller`; return its owner and the slot its pointer goes to.

    The pointer's user comes from the data, or, when the data has none, from the caller.
    """
    _require(caller, TenantCtx, "ctx")
    _require(data, SessionData, "data")
    mine, theirs = scope_of(caller), scope_of(data.tenant_ctx)
    if mine.env != theirs.env or mine.tenant_id != theirs.tenant_id:
        raise _violation("env/tenant", "the session's env and tenant_id must match the caller's")
    if mine.team != theirs.team:
        raise _violation("team", "the session's team must match the caller's")
    if theirs.user is not None and mine.user != theirs.user:
        raise _violation("user", "a session with a user can only be created by that user")
    return theirs, owner_slot(theirs, user=mine.user)


def owner_slot(owner: Scope, *, user: str | None = None) -> UserSlot | None:
    """The pointer slot of a session owned by `owner`; `user` stands in when the owner has none."""
    chosen = owner.user if owner.user is not None else user
    if chosen is None:
        return None
    return UserSlot(owner.env, owner.tenant_id, owner.team, chosen)


def check_update(stored: Scope, data: SessionData) -> None:
    """Admit `data` as the replacement of a session owned by `stored`."""
    _require(data, SessionData, "data")
    new = scope_of(data.tenant_ctx)
    if new.env != stored.env or new.tenant_id != stored.tenant_id:
        raise _violation("env/tenant", "an update cannot change the session's env or tenant_id")
    if new.team != stored.team:
        raise _violation("team", "an update cannot change the session's team")
    if new.user != stored.user:
        raise _violation("user", "an update cannot change, add or remove the session's user")


def hidden_owner_differs() -> InvalidInputError:
    """`check_update`'s refusal where the stored owner is hidden (a sealed blob, whose owner
    digest the server compared): which field differs is not known."""
    return _violation(
        "owner",
        "the stored session has another env, tenant_id, team or user, which an update "
        "cannot change",
    )


def lookup_slot(ctx: TenantCtx, user: str) -> UserSlot:
    """The slot `find_by_user(ctx, user)` reads."""
    _require(ctx, TenantCtx, "ctx")
    validate_identifier(user, "user")
    return UserSlot(ctx.env, ctx.tenant_id, ctx.normalized_team, user)


def own_slot(ctx: TenantCtx, user: str) -> UserSlot:
    """The slot `find_or_create(ctx, user, ...)` works on: `ctx`'s user, when set, is `user`."""
    slot = lookup_slot(ctx, user)
    mine = ctx.normalized_user
    if mine is not None and mine != user:
        raise _violation("user", "a caller with a user can only find or create its own session")
    return slot


def erase_slot(ctx: TenantCtx, user_id: str) -> UserSlot:
    """The user `erase_user(ctx, user_id)` erases, in `ctx`'s env, tenant and team: an operator
    context (no user) may erase any user there; a context with a user only itself (the rule of
    `own_slot` and `wait_lookup_slot`)."""
    slot = lookup_slot(ctx, user_id)
    mine = ctx.normalized_user
    if mine is not None and mine != user_id:
        raise _violation("user", "a caller with a user can only erase its own sessions")
    return slot


def check_find_or_create(
    caller: TenantCtx, slot: UserSlot, data: SessionData
) -> tuple[Scope, UserSlot]:
    """Admit `data`, built by `find_or_create`, for creation at `slot` (from `own_slot`)."""
    owner, _ = check_create(caller.with_user(slot.user), data)
    return owner, slot


def visible_to(slot: UserSlot, owner: Scope) -> bool:
    """Whether a session owned by `owner` may be returned for `slot`'s tenant, team and user."""
    return (
        owner.env == slot.env
        and owner.tenant_id == slot.tenant_id
        and owner.team == slot.team
        and (owner.user is None or owner.user == slot.user)
    )


def check_key(key: object) -> str:
    """Stores accept any non-empty str as a session key."""
    _require(key, str, "key")
    assert isinstance(key, str)
    if not key:
        raise InvalidInputError("session key must be a non-empty str")
    return key


# -- reply-scope waits ---------------------------------------------------------------------------
# A user's waits live at a `UserSlot` too. Their Redis keys write a missing team as "-"
# (`team_segment`), so a team literally named "-" shares its wait keys with "no team" (Rust's
# layout); `wait_verdict` keeps the two apart, and the in-memory store indexes by the same
# segments (`wait_segments`).


def _wait_slot(ctx: TenantCtx, user_id: str) -> UserSlot:
    return UserSlot(ctx.env, ctx.tenant_id, ctx.normalized_team, user_id)


def check_register_wait(
    caller: TenantCtx, user_id: str, data: SessionData
) -> tuple[Scope, UserSlot]:
    """Admit `data` as a wait of `user_id` registered by `caller` (Rust's `ensure_alignment` and
    `ensure_user_matches`): env, tenant_id and team match, and the caller's user, `user_id` and
    the data's user are all present and equal. Returns the session's owner and its wait slot."""
    _require(caller, TenantCtx, "ctx")
    _require(data, SessionData, "data")
    validate_identifier(user_id, "user_id")
    mine, theirs = scope_of(caller), scope_of(data.tenant_ctx)
    if mine.env != theirs.env or mine.tenant_id != theirs.tenant_id:
        raise _violation("env/tenant", "the session's env and tenant_id must match the caller's")
    if mine.team != theirs.team:
        raise _violation("team", "the session's team must match the caller's")
    if theirs.user is None:
        raise _violation("user", "a wait's session data must name its user")
    if mine.user is None:
        raise _violation("user", "registering a wait needs a caller context with a user")
    if mine.user != user_id or theirs.user != user_id:
        raise _violation("user", "the caller's user, user_id and the data's user must agree")
    return theirs, _wait_slot(caller, user_id)


def wait_lookup_slot(ctx: TenantCtx, user_id: str) -> UserSlot:
    """The slot `find_wait_by_scope`, `list_waits_for_user` and `clear_wait` work on: `ctx`'s
    user, when set, must be `user_id`."""
    _require(ctx, TenantCtx, "ctx")
    validate_identifier(user_id, "user_id")
    mine = ctx.normalized_user
    if mine is not None and mine != user_id:
        raise _violation("user", "a caller with a user can only look up its own waits")
    return _wait_slot(ctx, user_id)


def wait_segments(slot: UserSlot) -> tuple[str, str, str, str]:
    """The (env, tenant_id, team or "-", user) segments a wait key is built from."""
    return slot.env, slot.tenant_id, team_segment(slot.team), slot.user


LIVE, FOREIGN, SHARED = "live", "foreign", "shared"


def wait_verdict(slot: UserSlot, owner: Scope) -> str:
    """How a wait index entry at `slot` relates to the session it names, owned by `owner`:
    LIVE (the slot may see it), FOREIGN (that owner could never have registered it there, so the
    entry is provably dead), or SHARED (the team "-" against no team: an owner whose keys
    coincide with the slot's; neither ours to return nor to delete). lua/waits.lua's
    `wait_verdict` is this rule for Redis."""
    if (owner.env, owner.tenant_id, team_segment(owner.team)) != wait_segments(slot)[:3]:
        return FOREIGN
    if owner.user is not None and owner.user != slot.user:
        return FOREIGN
    return LIVE if owner.team == slot.team else SHARED


def wait_owners(slot: UserSlot) -> tuple[tuple[Scope, str], ...]:
    """Every owner a wait lookup at `slot` does not find FOREIGN, with its `wait_verdict`: the
    slot's user and no user, in the slot's team and, where "-" and no team share keys, in the
    other spelling. A sealing store sends these owners' digests to the wait scripts, which cannot
    read a sealed blob's owner (sealing.py)."""
    teams: tuple[str | None, ...] = (slot.team,)
    if slot.team is None or slot.team == NO_TEAM:
        teams = (slot.team, NO_TEAM if slot.team is None else None)
    owners = [
        Scope(slot.env, slot.tenant_id, team, user) for team in teams for user in (slot.user, None)
    ]
    return tuple((owner, wait_verdict(slot, owner)) for owner in owners)


def wait_ttl_millis(ttl: object, idle_ttl: float | None) -> int | None:
    """A wait's lifetime in whole milliseconds: `ttl` seconds (an int or float above zero; below
    a millisecond rounds up to one, as Rust's), or the store's `idle_ttl` when `ttl` is None, or
    None (no expiry) when neither is set."""
    seconds = idle_ttl if ttl is None else check_seconds(ttl, "ttl")
    return None if seconds is None else max(1, math.ceil(seconds * 1000))


def scope_hash_of(scope: object) -> str:
    """`scope`'s hash, once it is checked to be a `ReplyScope`."""
    _require(scope, ReplyScope, "scope")
    assert isinstance(scope, ReplyScope)
    return scope.scope_hash()
