"""The tenant fence: every ownership rule, once, as small pure functions.

Backends never compare tenant contexts themselves; they call these. A session's owner is its
`Scope` (env, tenant_id, normalized team, normalized user). The user pointer lives at a
`UserSlot`, the frozen key that each backend turns into its own storage key.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import InvalidInputError
from .schema import SessionData, TenantCtx, validate_identifier

__all__ = [
    "Scope",
    "UserSlot",
    "check_create",
    "check_find_or_create",
    "check_key",
    "check_update",
    "lookup_slot",
    "own_slot",
    "owner_slot",
    "scope_of",
    "visible_to",
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
