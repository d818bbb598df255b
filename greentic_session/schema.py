"""The session schema: msgspec Structs that speak greentic-types JSON byte for byte.

Field names and order follow the Rust structs (serde writes fields in declaration order);
`kw_only=True` lets a required field such as `attempt` sit after optional ones, exactly where
Rust declares it. `omit_defaults=True` reproduces `skip_serializing_if`: `None` options and an
empty `attributes` map are left out, while `attempt` has no default and so is always written
(and required on decode, as in Rust).

Structs are frozen; persisted Structs evolve only by adding fields with defaults. A copy made by
`msgspec.structs.replace` (`with_team`, `with_user`, an `update_with` callback) runs
`__post_init__`, so it is held to the identifier rule as construction is: msgspec does so from
0.21 on, which is why that is the declared floor.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, NewType, Self

import msgspec

from .errors import InvalidInputError

__all__ = [
    "Impersonation",
    "InvocationDeadline",
    "ReplyScope",
    "SessionCursor",
    "SessionData",
    "SessionKey",
    "TenantCtx",
    "check_writable",
    "new_session_key",
    "validate_identifier",
]

SessionKey = NewType("SessionKey", str)
"""Opaque session identifier; stores accept any non-empty `str`."""


def new_session_key() -> SessionKey:
    """A random (version 4) UUID in its usual text form, as the Rust crate issues.

    Built straight from `os.urandom` bytes: the same UUIDs as `str(uuid.uuid4())` at less than
    half the cost, which is a visible share of an in-memory create.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return SessionKey(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]+")


def validate_identifier(value: object, what: str) -> str:
    """The greentic-types identifier rule: non-empty, ASCII letters, digits, '.', '_', '-'.

    The message names the field, never the offending value (it may be a user id).
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    if _IDENTIFIER.fullmatch(value) is None:
        raise InvalidInputError(
            f"{what} must be non-empty and use only ASCII letters, digits, '.', '_' or '-'"
        )
    return value


# The same rule over several identifiers joined by '|': one regex call instead of one per field,
# on every construction and decode. An identifier may itself contain '|' ("a|b" would pass as two
# good ones), so the join must also hold exactly one '|' per gap: serde refuses such an id.
_JOINED_IDENTIFIERS = re.compile(r"[A-Za-z0-9._-]+(?:\|[A-Za-z0-9._-]+)*")


def _validate_identifiers(
    names: tuple[str, ...], required: tuple[object, ...], optional: tuple[object, ...]
) -> None:
    """Check `required` and the non-None `optional` identifiers; on failure name the field."""
    present = [*required, *(v for v in optional if v is not None)]
    try:
        joined = "|".join(present)  # type: ignore[arg-type]
    except TypeError:
        joined = ""  # a non-str value: let the per-field pass name it
    if _JOINED_IDENTIFIERS.fullmatch(joined) is not None and joined.count("|") == len(present) - 1:
        return
    for name, value in zip(names, (*required, *optional), strict=True):
        if value is not None or name in names[: len(required)]:
            validate_identifier(value, name)


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """Base for every persisted Struct: serde-compatible options in one place.

    msgspec inherits `omit_defaults`, but `kw_only` applies per class, and mypy's view of
    dataclass-like classes needs `frozen` restated, so each subclass repeats both.
    """


# Rust's `InvocationDeadline.unix_millis` is an i128 and `TenantCtx.attempt` a u32: serde
# refuses anything outside them, so neither is ever written nor read.
UNIX_MILLIS_MIN, UNIX_MILLIS_MAX = -(2**127), 2**127 - 1
ATTEMPT_MAX = 2**32 - 1


class InvocationDeadline(_Wire, kw_only=True, frozen=True):
    unix_millis: int

    def __post_init__(self) -> None:
        millis = self.unix_millis
        if type(millis) is int and not UNIX_MILLIS_MIN <= millis <= UNIX_MILLIS_MAX:
            raise InvalidInputError("deadline.unix_millis must fit a signed 128-bit integer")


class Impersonation(_Wire, kw_only=True, frozen=True):
    actor_id: str
    reason: str | None = None

    def __post_init__(self) -> None:
        validate_identifier(self.actor_id, "impersonation.actor_id")


# The TenantCtx fields that say who owns a session: identifiers, and the head of every blob.
OWNER_FIELDS = ("env", "tenant", "tenant_id", "team", "team_id", "user", "user_id")


class TenantCtx(_Wire, kw_only=True, frozen=True):
    """Who a session belongs to. Build it with `TenantCtx.new(...)`."""

    env: str
    tenant: str
    tenant_id: str
    team: str | None = None
    team_id: str | None = None
    user: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    flow_id: str | None = None
    node_id: str | None = None
    provider_id: str | None = None
    trace_id: str | None = None
    i18n_id: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    deadline: InvocationDeadline | None = None
    attempt: int
    idempotency_key: str | None = None
    impersonation: Impersonation | None = None

    def __post_init__(self) -> None:
        _validate_identifiers(
            OWNER_FIELDS,
            (self.env, self.tenant, self.tenant_id),
            (self.team, self.team_id, self.user, self.user_id),
        )
        if type(self.attempt) is not int or self.attempt < 0 or self.attempt > ATTEMPT_MAX:
            raise InvalidInputError("attempt must be an int that fits an unsigned 32-bit integer")

    @classmethod
    def new(
        cls,
        env: str,
        tenant: str,
        *,
        team: str | None = None,
        user: str | None = None,
        attempt: int = 0,
        **fields: Any,
    ) -> Self:
        """Like Rust's `TenantCtx::new(env, tenant).with_team(team).with_user(user)`."""
        return cls(
            env=env,
            tenant=tenant,
            tenant_id=tenant,
            team=team,
            team_id=team,
            user=user,
            user_id=user,
            attempt=attempt,
            **fields,
        )

    def with_team(self, team: str | None) -> Self:
        """A copy whose `team` and `team_id` are both `team`."""
        return msgspec.structs.replace(self, team=team, team_id=team)

    def with_user(self, user: str | None) -> Self:
        """A copy whose `user` and `user_id` are both `user`."""
        return msgspec.structs.replace(self, user=user, user_id=user)

    @property
    def normalized_team(self) -> str | None:
        return self.team_id if self.team_id is not None else self.team

    @property
    def normalized_user(self) -> str | None:
        return self.user_id if self.user_id is not None else self.user


class SessionCursor(_Wire, kw_only=True, frozen=True):
    """Where the paused flow waits."""

    node_pointer: str
    wait_reason: str | None = None
    outbox_marker: str | None = None


class SessionData(_Wire, kw_only=True, frozen=True):
    """The snapshot a runner persists between a flow's pause and its resume."""

    tenant_ctx: TenantCtx
    flow_id: str
    pack_id: str | None = None
    cursor: SessionCursor
    context_json: str

    def __post_init__(self) -> None:
        _validate_identifiers(("flow_id", "pack_id"), (self.flow_id,), (self.pack_id,))


class ReplyScope(_Wire, kw_only=True, frozen=True):
    """Where a reply is anchored (greentic-types `ReplyScope`): a conversation, optionally
    narrowed by thread, the message replied to, and a correlation id.

    Fields are free text (no identifier rule, no trimming or case folding), as in Rust. Unset
    optional fields are omitted from the JSON; construction refuses a non-str field or a string
    that is not valid Unicode, so every scope can be encoded and hashed.
    """

    conversation: str
    thread: str | None = None
    reply_to: str | None = None
    correlation: str | None = None

    def __post_init__(self) -> None:
        present = [self.conversation]
        present += [v for v in (self.thread, self.reply_to, self.correlation) if v is not None]
        try:
            if "".join(present).isascii():  # the common case, one pass; TypeError if not str
                return
        except TypeError:
            pass
        for name in ("conversation", "thread", "reply_to", "correlation"):
            value = getattr(self, name)
            if value is not None or name == "conversation":
                _check_text(value, f"scope.{name}")

    def scope_hash(self) -> str:
        """Rust's `scope_hash()`: lowercase hex SHA-256 of the four fields joined by newlines,
        an unset field as the empty string (so `None` and `""` hash alike)."""
        canonical = "\n".join(
            (self.conversation, self.thread or "", self.reply_to or "", self.correlation or "")
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- the write check ------------------------------------------------------------------------------
# msgspec type-checks on decode, never on construction, so `SessionData(context_json=[1])` builds
# fine and would be written as JSON that no runner can read back. Every write runs this check.


def check_writable(data: SessionData) -> int | None:
    """Raise `InvalidInputError` unless every field of `data` has its declared type and every
    string is valid Unicode (no lone surrogates), so the codec can write it and Rust read it.

    The common case is one pass: all strings are joined (a non-str raises TypeError) and the
    result checked with `isascii()`. Any doubt falls through to a pass over the schema that
    names the field, never its value. Anything but a `SessionData` is a `TypeError`.
    Returns how many characters the strings hold when the one pass decided (all ASCII; the size
    limit bounds the encoded size with it, see `limits`), else None.
    """
    if not isinstance(data, SessionData):
        raise TypeError(f"data must be SessionData, not {type(data).__name__}")
    ctx, cursor = data.tenant_ctx, data.cursor
    if (
        isinstance(ctx, TenantCtx)
        and isinstance(cursor, SessionCursor)
        and type(ctx.attempt) is int
        and 0 <= ctx.attempt <= ATTEMPT_MAX
        and type(ctx.attributes) is dict
        and (
            (deadline := ctx.deadline) is None
            or (
                isinstance(deadline, InvocationDeadline)
                and type(deadline.unix_millis) is int
                and UNIX_MILLIS_MIN <= deadline.unix_millis <= UNIX_MILLIS_MAX
            )
        )
        and ((actor := ctx.impersonation) is None or isinstance(actor, Impersonation))
    ):
        optional = (
            data.pack_id, cursor.wait_reason, cursor.outbox_marker, ctx.team, ctx.team_id,
            ctx.user, ctx.user_id, ctx.session_id, ctx.flow_id, ctx.node_id, ctx.provider_id,
            ctx.trace_id, ctx.i18n_id, ctx.correlation_id, ctx.idempotency_key,
            None if actor is None else actor.actor_id, None if actor is None else actor.reason,
        )  # fmt: skip
        texts = [
            data.flow_id, cursor.node_pointer, ctx.env, ctx.tenant, ctx.tenant_id,
            *ctx.attributes, *ctx.attributes.values(), *[v for v in optional if v is not None],
        ]  # fmt: skip
        try:
            joined = "".join(texts)
        except TypeError:
            pass
        else:
            body = data.context_json  # checked on its own: joining would copy it
            if joined.isascii() and isinstance(body, str) and body.isascii():
                return len(joined) + len(body)
    _check_value(data, _SESSION_DATA_TYPE, "data")
    return None


_SESSION_DATA_TYPE = msgspec.inspect.type_info(SessionData)
# The Rust integer types of the int fields, by field name: a new int field must be added here.
# The codec refuses "-0" where the low bound is 0 (serde reads it as a float, which a u32 refuses).
INT_RANGES = {"attempt": (0, ATTEMPT_MAX), "unix_millis": (UNIX_MILLIS_MIN, UNIX_MILLIS_MAX)}


def _check_value(value: object, kind: msgspec.inspect.Type, what: str) -> None:
    """The naming pass of `check_writable`, driven by the schema itself (new fields included)."""
    mi = msgspec.inspect
    if isinstance(kind, mi.UnionType):
        if value is None and any(isinstance(t, mi.NoneType) for t in kind.types):
            return
        (kind,) = (t for t in kind.types if not isinstance(t, mi.NoneType))
    if isinstance(kind, mi.StrType):
        _check_text(value, what)
    elif isinstance(kind, mi.IntType):
        _check_type(value, int, what)
        low, high = INT_RANGES[what.rpartition(".")[2]]
        if not low <= value <= high:  # type: ignore[operator]
            raise InvalidInputError(f"{what} is out of range")
    elif isinstance(kind, mi.DictType):
        _check_type(value, dict, what)
        for k, v in value.items():  # type: ignore[attr-defined]
            _check_value(k, kind.key_type, f"{what} key")
            _check_value(v, kind.value_type, f"{what} value")
    elif isinstance(kind, mi.StructType):
        if not isinstance(value, kind.cls):
            wanted, got = kind.cls.__name__, type(value).__name__
            raise InvalidInputError(f"{what} must be {wanted}, not {got}")
        for field in kind.fields:
            _check_value(getattr(value, field.name), field.type, f"{what}.{field.name}")
    else:  # pragma: no cover - a schema change this check does not know yet
        raise TypeError(f"check_writable cannot check {kind!r}; extend _check_value")


def _check_type(value: object, kind: type, what: str) -> None:
    if type(value) is not kind:  # exact: a bool is an int to Python, `true` to JSON
        raise InvalidInputError(f"{what} must be {kind.__name__}, not {type(value).__name__}")


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be str, not {type(value).__name__}")
    if not is_unicode(value):
        raise InvalidInputError(f"{what} is not valid Unicode (a lone surrogate)")


def is_unicode(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (holds no lone surrogate). Callers raise their error
    outside the failed encode, so no exception chain carries the text itself."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
