"""The Redis key layout, shared byte for byte with the Rust greentic-session.

- session blob:  `{namespace}:session:{session_key}`
- user pointer:  `{namespace}:user:{env}:{tenant_id}:{team or "-"}:{user}`
- wait scope:    `{namespace}:waits:scope:{env}:{tenant_id}:{team or "-"}:{user}:{scope_hash}`
- user's waits:  `{namespace}:waits:user:{env}:{tenant_id}:{team or "-"}:{user}` (a SET of keys)
- expiry meta:   `{namespace}:meta:{session_key}`, ours alone, written only when the store has an
  expiry option (`idle_ttl`, `max_lifetime`): its value is the user-pointer suffix
  (`{env}:{tenant_id}:{team or "-"}:{user}`, empty when none) so a touch can refresh the pointer
  of a user-less session, and its PTTL is the session's remaining lifetime under `max_lifetime`.

lua/remove.lua builds a pointer key from a stored owner by the same rule (it gets the prefix from
here); tests/test_redis_layout.py proves the two agree.
"""

from __future__ import annotations

import re

from ...errors import InvalidInputError
from ...fence import UserSlot

__all__ = ["RedisKeys", "validate_namespace"]

# Glob characters and whitespace are kept out so that `~{namespace}:*` ACL patterns and SCAN
# matches mean what they say; braces are allowed for cluster hash tags.
_NAMESPACE = re.compile(r"[A-Za-z0-9._{}-]+(?::[A-Za-z0-9._{}-]+)*")


def validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str):
        raise InvalidInputError(f"namespace must be a str, not {type(namespace).__name__}")
    if len(namespace) > 256 or _NAMESPACE.fullmatch(namespace) is None:
        raise InvalidInputError(
            "namespace must be ':'-separated non-empty parts of ASCII letters, digits, '.', '_', "
            "'-', '{', '}' (at most 256 characters)"
        )
    return namespace


class RedisKeys:
    """Builds every Redis key the store touches, for one namespace."""

    __slots__ = (
        "meta_prefix",
        "namespace",
        "session_prefix",
        "user_prefix",
        "wait_hint_prefix",
        "wait_scope_prefix",
        "wait_user_prefix",
    )

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_namespace(namespace)
        self.session_prefix = f"{namespace}:session:"
        self.user_prefix = f"{namespace}:user:"
        self.meta_prefix = f"{namespace}:meta:"
        self.wait_scope_prefix = f"{namespace}:waits:scope:"
        self.wait_user_prefix = f"{namespace}:waits:user:"
        self.wait_hint_prefix = f"{namespace}:waitof:"

    def session(self, key: str) -> str:
        return self.session_prefix + key

    def meta(self, key: str) -> str:
        return self.meta_prefix + key

    @staticmethod
    def slot_suffix(slot: UserSlot) -> str:
        """`{env}:{tenant_id}:{team or "-"}:{user}`, the tail of every per-user key."""
        team = slot.team if slot.team is not None else "-"
        return f"{slot.env}:{slot.tenant_id}:{team}:{slot.user}"

    def user(self, slot: UserSlot) -> str:
        return self.user_prefix + self.slot_suffix(slot)

    def wait_user(self, slot: UserSlot) -> str:
        return self.wait_user_prefix + self.slot_suffix(slot)

    def wait_scope(self, slot: UserSlot, scope_hash: str) -> str:
        return f"{self.wait_scope_prefix}{self.slot_suffix(slot)}:{scope_hash}"

    def wait_hint(self, key: str) -> str:
        return self.wait_hint_prefix + key
