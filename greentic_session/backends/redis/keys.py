"""The Redis key layout, shared byte for byte with the Rust greentic-session.

- session blob:  `{namespace}:session:{session_key}`
- user pointer:  `{namespace}:user:{env}:{tenant_id}:{team or "-"}:{user}`
- wait scope:    `{namespace}:waits:scope:{env}:{tenant_id}:{team or "-"}:{user}:{scope_hash}`
- user's waits:  `{namespace}:waits:user:{env}:{tenant_id}:{team or "-"}:{user}` (a SET of keys)
- expiry meta:   `{namespace}:meta:{session_key}`, ours alone, written only when the store has an
  expiry option (`idle_ttl`, `max_lifetime`): its value is the user-pointer suffix
  (`{env}:{tenant_id}:{team or "-"}:{user}`, empty when none) so a touch can refresh the pointer
  of a user-less session, and its PTTL is the session's remaining lifetime under `max_lifetime`.
- deadline:      `{namespace}:due:{session_key}`, ours alone, written only for a wait registered
  with `due_in` (a HASH: lua/due_record.lua), and its index `{namespace}:dueidx` (a ZSET; on a
  cluster one per shard, `{namespace}:dueidx:{tag}`: backends/redis/due.py).

lua/remove.lua builds a pointer key from a stored owner by the same rule (it gets the prefix from
here); tests/test_redis_layout.py proves the two agree.

On a Redis Cluster (`cluster=True`) the layout gains hash tags so that a session and its indexes
share one slot, and every write stays one script on one node: the per-user suffix becomes
`{tag}:{env}:{tenant_id}:{team or "-"}:{user}`, where `tag` is the first 8 hex digits of the
SHA-1 of the plain suffix (owner.lua's `pointer_suffix` computes the same with `redis.sha1hex`),
and the keys the store mints for a user start with that `{tag}`. A caller's key carries no tag
(unless built with `tagged_key`): its blob, meta and hint keys lead it with a tag of its own
(`{namespace}:session:{8 hex digits of the key's SHA-1}{key}`) so they share one slot, and the
calls that also touch its user pointer take two ordered steps (see store.py); the pointer still
holds the bare key.
The namespace may hold no brace there: its tag would put every key in one slot.
"""

from __future__ import annotations

import hashlib
import re

from ...errors import InvalidInputError
from ...fence import UserSlot, team_segment
from ...schema import SessionKey, new_session_key

__all__ = ["RedisKeys", "is_tagged", "key_tag", "validate_namespace"]

# Glob characters and whitespace are kept out so that `~{namespace}:*` ACL patterns and SCAN
# matches mean what they say; braces are allowed for cluster hash tags.
_NAMESPACE = re.compile(r"[A-Za-z0-9._{}-]+(?::[A-Za-z0-9._{}-]+)*")


# A key the cluster layout minted (or `tagged_key` built): `{` 8 lowercase hex digits `}` first.
_TAGGED = re.compile(r"\{[0-9a-f]{8}\}")


def is_tagged(key: str) -> bool:
    """Whether `key` starts with a cluster layout tag (its indexes then share its slot)."""
    return _TAGGED.match(key) is not None


def key_tag(key: str) -> str:
    """The cluster layout tag `key` starts with (`{8 hex digits}`), or ''."""
    return key[:10] if _TAGGED.match(key) is not None else ""


def validate_namespace(namespace: object, *, cluster: bool = False) -> str:
    if not isinstance(namespace, str):
        raise InvalidInputError(f"namespace must be a str, not {type(namespace).__name__}")
    if len(namespace) > 256 or _NAMESPACE.fullmatch(namespace) is None:
        raise InvalidInputError(
            "namespace must be ':'-separated non-empty parts of ASCII letters, digits, '.', '_', "
            "'-', '{', '}' (at most 256 characters)"
        )
    if cluster and ("{" in namespace or "}" in namespace):
        raise InvalidInputError(
            "a Redis Cluster namespace may not contain '{' or '}': a hash tag in it would put "
            "every session in one slot, on one node"
        )
    return namespace


class RedisKeys:
    """Builds every Redis key the store touches, for one namespace."""

    __slots__ = (
        "cluster",
        "due_prefix",
        "index_prefixes",
        "meta_prefix",
        "namespace",
        "session_prefix",
        "user_prefix",
        "wait_hint_prefix",
        "wait_scope_prefix",
        "wait_user_prefix",
    )

    def __init__(self, namespace: str, *, cluster: bool = False) -> None:
        self.namespace = validate_namespace(namespace, cluster=cluster)
        self.cluster = cluster
        self.session_prefix = f"{namespace}:session:"
        self.user_prefix = f"{namespace}:user:"
        self.meta_prefix = f"{namespace}:meta:"
        self.wait_scope_prefix = f"{namespace}:waits:scope:"
        self.wait_user_prefix = f"{namespace}:waits:user:"
        self.wait_hint_prefix = f"{namespace}:waitof:"
        self.due_prefix = f"{namespace}:due:"
        # The prefixes of a session's user indexes, as update.lua, touch.lua and remove.lua take
        # them: user pointer, scope pointer, user SET.
        self.index_prefixes = (self.user_prefix, self.wait_scope_prefix, self.wait_user_prefix)

    def session(self, key: str) -> str:
        return self.session_prefix + self._own(key)

    def meta(self, key: str) -> str:
        return self.meta_prefix + self._own(key)

    def _own(self, key: str) -> str:
        """The part of a session's own keys (blob, meta, hint) after their prefix: the key; on a
        cluster an untagged key led by a tag of its own (the SHA-1 of the key, as `_tag`), so the
        three share a slot whatever braces the key holds."""
        if self.cluster and _TAGGED.match(key) is None:
            return _tag(key) + key
        return key

    def slot_suffix(self, slot: UserSlot) -> str:
        """`{env}:{tenant_id}:{team or "-"}:{user}`, the tail of every per-user key; on a cluster
        led by the user's tag."""
        plain = f"{slot.env}:{slot.tenant_id}:{team_segment(slot.team)}:{slot.user}"
        if self.cluster:
            return f"{_tag(plain)}:{plain}"
        return plain

    def tag(self, slot: UserSlot) -> str:
        """The cluster hash tag of `slot`'s keys, `{8 hex digits}`; '' on a single node."""
        return self.slot_suffix(slot)[:10] if self.cluster else ""

    def mint(self, slot: UserSlot | None) -> SessionKey:
        """A new random session key; on a cluster tagged for `slot`'s user (the pointer's)."""
        key = new_session_key()
        return key if slot is None or not self.cluster else SessionKey(self.tag(slot) + key)

    def tagged_key(self, slot: UserSlot, key: str) -> SessionKey:
        """`key` for a session of `slot`'s user: led by the user's tag on a cluster (unless it
        already is), unchanged on a single node."""
        if not self.cluster or key.startswith(self.tag(slot)):
            return SessionKey(key)
        return SessionKey(self.tag(slot) + key)

    def local_only(self, key: str) -> bool:
        """On a cluster, whether `key`'s indexes may live in another slot than its blob (an
        untagged key of the caller's): its calls then take two steps."""
        return self.cluster and _TAGGED.match(key) is None

    def user(self, slot: UserSlot) -> str:
        return self.user_prefix + self.slot_suffix(slot)

    def user_of_suffix(self, suffix: str) -> str:
        """The user pointer whose `slot_suffix` a script returned (a meta key's value)."""
        return self.user_prefix + suffix

    def wait_user(self, slot: UserSlot) -> str:
        return self.wait_user_prefix + self.slot_suffix(slot)

    def wait_scope(self, slot: UserSlot, scope_hash: str) -> str:
        return f"{self.wait_scope_prefix}{self.slot_suffix(slot)}:{scope_hash}"

    def wait_hint(self, key: str) -> str:
        return self.wait_hint_prefix + self._own(key)

    def due(self, key: str) -> str:
        """The deadline record of the wait at `key` (in its slot, as its hint)."""
        return self.due_prefix + self._own(key)

    def due_index(self, tag: str = "") -> str:
        """The deadline index: the single node's, or (with a shard's `tag`) a cluster shard's."""
        return f"{self.namespace}:dueidx" + (f":{tag}" if tag else "")


def _tag(plain_suffix: str) -> str:
    return "{" + hashlib.sha1(plain_suffix.encode(), usedforsecurity=False).hexdigest()[:8] + "}"
