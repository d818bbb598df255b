"""What a key under the namespace is, read from its name by the layout of `RedisKeys`.

The stores are gaining key kinds (expiry meta, Rust 0.5 waits), so every command handles keys
by kind and by name alone: a name that fits no kind is `OTHER` and is never touched.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from ..backends.redis.keys import RedisKeys
from ..errors import InvalidInputError
from ..fence import UserSlot, team_of_segment
from ..schema import validate_identifier

__all__ = ["COMPANION_KINDS", "STRING_KINDS", "Kind", "Layout", "Parsed"]


class Kind(StrEnum):
    SESSION = "session"  # {ns}:session:{key} = the blob
    META = "meta"  # {ns}:meta:{key} = pointer suffix; PTTL = remaining lifetime
    WAIT_HINT = "wait-hint"  # {ns}:waitof:{key} = "{ttl ms}:{scope suffix}" of a wait session
    POINTER = "pointer"  # {ns}:user:{slot} = a session key
    WAIT_SCOPE = "wait-scope"  # {ns}:waits:scope:{slot}:{scope_hash} = a session key
    WAIT_SET = "wait-set"  # {ns}:waits:user:{slot} = a SET of session keys
    OTHER = "other"  # fits no kind: counted, never changed


# The kinds stored as Redis strings; WAIT_SET is a Redis set.
STRING_KINDS = frozenset({Kind.SESSION, Kind.META, Kind.WAIT_HINT, Kind.POINTER, Kind.WAIT_SCOPE})
# The kinds that belong to one session (named by its key) and go with it.
COMPANION_KINDS = frozenset({Kind.META, Kind.WAIT_HINT})
# The kinds whose value (or members) name a session.
REFERENCE_KINDS = frozenset({Kind.POINTER, Kind.WAIT_SCOPE, Kind.WAIT_SET})


class Parsed(NamedTuple):
    kind: Kind
    session_key: str | None = None  # SESSION, META, WAIT_HINT
    slot: UserSlot | None = None  # POINTER, WAIT_SCOPE, WAIT_SET


_OTHER = Parsed(Kind.OTHER)


def parse_slot(text: str) -> UserSlot | None:
    """`{env}:{tenant_id}:{team or "-"}:{user}` as a slot, or None if it is not one."""
    parts = text.split(":")
    if len(parts) != 4:
        return None
    try:
        for part, what in zip(parts, ("env", "tenant_id", "team", "user"), strict=True):
            validate_identifier(part, what)
    except InvalidInputError:
        return None
    env, tenant_id, team, user = parts
    return UserSlot(env, tenant_id, team_of_segment(team), user)


class Layout:
    """Names relative to one namespace, parsed into kinds."""

    def __init__(self, namespace: str) -> None:
        self.keys = RedisKeys(namespace)  # validates the namespace
        self.namespace = namespace
        self.prefix = f"{namespace}:"
        self.match = f"{namespace}:*"
        n = len(self.prefix)
        # The RedisKeys prefixes, relative to the namespace.
        self._session = self.keys.session_prefix[n:]
        self._meta = self.keys.meta_prefix[n:]
        self._hint = self.keys.wait_hint_prefix[n:]
        self._user = self.keys.user_prefix[n:]
        self._scope = self.keys.wait_scope_prefix[n:]
        self._waits = self.keys.wait_user_prefix[n:]

    def full(self, name: str) -> str:
        return self.prefix + name

    def session_name(self, key: str) -> str:
        return self._session + key

    def meta_name(self, key: str) -> str:
        return self._meta + key

    def hint_name(self, key: str) -> str:
        return self._hint + key

    def companion_names(self, key: str) -> list[str]:
        """The keys that go with session `key`: its meta key and its wait hint."""
        return [self._meta + key, self._hint + key]

    def pointer_name(self, slot: UserSlot) -> str:
        return self._user + self.keys.slot_suffix(slot)

    def relative(self, full: bytes) -> str | None:
        """The name of `full` inside the namespace, or None if it is outside or not UTF-8."""
        try:
            text = full.decode()
        except UnicodeDecodeError:
            return None
        return text[len(self.prefix) :] if text.startswith(self.prefix) else None

    def parse(self, name: str) -> Parsed:
        """The kind of the key `{namespace}:{name}`."""
        for prefix, kind in (
            (self._session, Kind.SESSION),
            (self._meta, Kind.META),
            (self._hint, Kind.WAIT_HINT),
        ):
            if name.startswith(prefix):
                key = name[len(prefix) :]
                return Parsed(kind, session_key=key) if key else _OTHER
        if name.startswith(self._user):
            slot = parse_slot(name[len(self._user) :])
            return _OTHER if slot is None else Parsed(Kind.POINTER, slot=slot)
        if name.startswith(self._waits):
            slot = parse_slot(name[len(self._waits) :])
            return _OTHER if slot is None else Parsed(Kind.WAIT_SET, slot=slot)
        if name.startswith(self._scope):
            head, sep, scope_hash = name[len(self._scope) :].rpartition(":")
            slot = parse_slot(head) if sep and scope_hash else None
            return _OTHER if slot is None else Parsed(Kind.WAIT_SCOPE, slot=slot)
        return _OTHER
