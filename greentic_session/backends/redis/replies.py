"""What the Lua scripts answer: each script's reply codes, named (an `IntEnum` per script, as its
header in lua/ states them), and the one place that turns a reply into a result or a
`SessionError`. A code means what its script says: -2 is "the revision differs" to update.lua
but "the session is in another cluster slot" to find.lua.

Replies arrive as redis-py gives them, undecoded: integers, bytes, lists, None (Lua's false).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from ...errors import ConflictError, InternalError, NotFoundError
from ...fence import Scope, check_update, hidden_owner_differs
from ...schema import SessionData, SessionKey

__all__ = [
    "ClearWaitReply",
    "CreateForUserReply",
    "CreateReply",
    "FindWaitReply",
    "FoundBlob",
    "ListWaitsReply",
    "RegisterWaitReply",
    "RemoveReply",
    "TouchReply",
    "UpdateReply",
    "cleared_wait",
    "corrupt",
    "created",
    "created_for_user",
    "found_wait",
    "listed_waits",
    "pointed",
    "pointer_plan",
    "registered",
    "removed",
    "text",
    "touched",
    "updated",
]


class CreateReply(IntEnum):
    """create.lua."""

    CREATED = 1
    KEY_TAKEN = 0


class FoundBlob(IntEnum):
    """The blob half of find.lua's and create_for_user.lua's {session key, blob} when it holds
    no blob: the blob key holds another type, or the session lives in another cluster slot (a
    caller's key: the store reads it there, `split.SplitSteps.read_elsewhere`)."""

    WRONG_TYPE = 0
    IN_OTHER_SLOT = -2


class CreateForUserReply(IntEnum):
    """create_for_user.lua; otherwise {session key, blob} of the session the pointer names."""

    CREATED = 1


class UpdateReply(IntEnum):
    """update.lua; otherwise {env, tenant_id, team, user} of a stored owner that differs, or,
    for a key whose indexes live in another cluster slot, {pointer suffix, TTL ms} when written."""

    WRITTEN = 1
    MISSING = 0
    CORRUPT = -1
    REVISION_DIFFERS = -2
    SEALED_OWNER_DIFFERS = -4


class TouchReply(IntEnum):
    """touch.lua; with indexes in another cluster slot, {pointer suffix, TTL ms} when touched."""

    TOUCHED = 1
    MISSING = 0


class RemoveReply(IntEnum):
    """remove.lua; with indexes in another cluster slot, the pointer suffix when removed."""

    REMOVED = 1
    GONE = 0


class RegisterWaitReply(IntEnum):
    """register_wait.lua; with a deadline, the deadline (ms since the epoch: above 1) in place
    of REGISTERED; otherwise {env, tenant_id, team, user} of a stored owner that differs."""

    REGISTERED = 1
    CORRUPT = -1
    SET_WRONG_TYPE = -3
    SEALED_OWNER_DIFFERS = -4


class FindWaitReply(IntEnum):
    """find_wait.lua; otherwise the session key, or None."""

    CORRUPT = -1


class ListWaitsReply(IntEnum):
    """list_waits.lua; otherwise the live session keys."""

    CORRUPT = -1
    SET_WRONG_TYPE = -3


class ClearWaitReply(IntEnum):
    """clear_wait.lua."""

    CLEARED = 1
    NOTHING = 0
    CORRUPT = -1


# The codes the common calls check first, bound once: an enum member lookup costs ~0.25 us on
# Python 3.11 (the metaclass), a module global a twentieth of that.
_WRITTEN = UpdateReply.WRITTEN
_TOUCHED = TouchReply.TOUCHED
_REMOVED = RemoveReply.REMOVED
_CREATED = CreateReply.CREATED
_CREATED_FOR_USER = CreateForUserReply.CREATED
_WRONG_TYPE = FoundBlob.WRONG_TYPE
_REGISTERED = RegisterWaitReply.REGISTERED


def text(value: bytes | str) -> str:
    """A string a script returned; stored bytes that are not UTF-8 are unusable data."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InternalError("a stored key or owner field is not UTF-8 text") from None


def corrupt(key: str, why: str) -> InternalError:
    """The error for a stored session the store cannot use."""
    return InternalError(f"session {key!r}: {why}")


def _owner_differs(reply: Any, key: str, data: SessionData) -> InternalError:
    """A script's {env, tenant_id, team, user} of the stored owner ('' for none), which differs
    from `data`'s: the tenant fence raises for it; if it does not, the two disagree. A sealed
    blob's owner differs too (-4, owner.lua's owner_reply), unseen."""
    if reply == UpdateReply.SEALED_OWNER_DIFFERS:
        raise hidden_owner_differs()
    if not isinstance(reply, list) or len(reply) != 4:
        return InternalError(f"session {key!r}: unexpected reply from the write script")
    env, tenant_id, team, user = (text(part) for part in reply)
    check_update(Scope(env, tenant_id, team or None, user or None), data)
    return InternalError(f"session {key!r}: the owner check disagreed with the tenant fence")


def created(reply: Any, key: str) -> None:
    """create.lua's reply: nothing when created, else `ConflictError`."""
    if reply != _CREATED:
        raise ConflictError(f"a session with key {key!r} already exists")


def pointed(reply: Any) -> tuple[SessionKey, bytes | None] | None:
    """find.lua's reply: None without a pointer, else the session key it names and the blob
    (None when gone); a blob key of another type is `InternalError`."""
    if reply is None:
        return None
    key, raw = SessionKey(text(reply[0])), reply[1]
    if raw == _WRONG_TYPE:
        raise corrupt(key, "blob key holds a non-string Redis value")
    return key, raw


def created_for_user(reply: Any) -> tuple[SessionKey, bytes | None] | None:
    """create_for_user.lua's reply: None when it created the session, else the session the
    pointer names meanwhile, as `pointed` reads it."""
    if reply == _CREATED_FOR_USER:
        return None
    return pointed(reply)


def updated(reply: Any, key: str, expected: str, data: SessionData, *, split: bool) -> None:
    """update.lua's reply: nothing when written, else the `SessionError` it means (`expected`
    is the revision the write was conditioned on, for the message)."""
    if reply == _WRITTEN or (split and isinstance(reply, list) and len(reply) == 2):
        return
    if reply == UpdateReply.MISSING:
        raise NotFoundError(f"session {key!r} not found")
    if reply == UpdateReply.CORRUPT:
        raise corrupt(key, "stored blob is not SessionData JSON nor a sealed blob this store reads")
    if reply == UpdateReply.REVISION_DIFFERS:
        raise ConflictError(f"session {key!r} changed since revision {expected!r}")
    raise _owner_differs(reply, key, data)


def touched(reply: Any, key: str, *, split: bool) -> None:
    """touch.lua's reply: nothing when touched, else `NotFoundError`."""
    if reply != _TOUCHED and not (split and isinstance(reply, list)):
        raise NotFoundError(f"session {key!r} not found")


def pointer_plan(reply: object) -> tuple[str, int] | None:
    """The {pointer suffix, TTL ms} update.lua or touch.lua return for a key whose pointer lives
    in another cluster slot, when there is a pointer to refresh; else None."""
    if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes)):
        return None
    suffix, ttl = text(reply[0]), reply[1]
    if suffix and isinstance(ttl, int) and ttl > 0:
        return suffix, ttl
    return None


def removed(reply: Any, key: str, *, split: bool) -> None:
    """remove.lua's reply: nothing when removed, else `NotFoundError`. (With indexes in another
    cluster slot the pointer is left to the next lookup's repair: deleting it here by name could
    delete the pointer of a session re-created under this key meanwhile.)"""
    if reply != _REMOVED and not (split and isinstance(reply, bytes)):
        raise NotFoundError(f"session {key!r} not found")


def registered(reply: Any, key: str, data: SessionData) -> None:
    """register_wait.lua's reply: nothing when registered, else the `SessionError` it means."""
    if reply == _REGISTERED or (type(reply) is int and reply > _REGISTERED):
        return
    if reply == RegisterWaitReply.CORRUPT:
        raise corrupt(key, "stored blob is not SessionData JSON nor a sealed blob this store reads")
    if reply == RegisterWaitReply.SET_WRONG_TYPE:
        raise InternalError("a wait index key holds a value of another Redis type")
    raise _owner_differs(reply, key, data)


def found_wait(reply: Any) -> SessionKey | None:
    """find_wait.lua's reply: the live wait's session key, or None."""
    if reply is None:
        return None
    if reply == FindWaitReply.CORRUPT:
        raise InternalError("a wait names a session that is not SessionData JSON")
    return SessionKey(text(reply))


def listed_waits(reply: Any) -> list[SessionKey]:
    """list_waits.lua's reply: the live waits' session keys."""
    if reply == ListWaitsReply.CORRUPT:
        raise InternalError("a wait names a session that is not SessionData JSON")
    if reply == ListWaitsReply.SET_WRONG_TYPE:
        raise InternalError("a wait index key holds a value of another Redis type")
    return [SessionKey(text(key)) for key in reply]


def cleared_wait(reply: Any) -> None:
    """clear_wait.lua's reply: nothing whether or not a session was deleted, else
    `InternalError`."""
    if reply == ClearWaitReply.CORRUPT:
        raise InternalError("a wait names a session that is not SessionData JSON")
