"""greentic_session: asyncio-native persistence for paused Greentic flows.

The public API lives here. `RedisSessionStore` is imported lazily (on first attribute access),
so `import greentic_session` never imports redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends.memory import InMemorySessionStore
from .backends.redis.options import DEFAULT_NAMESPACE
from .codec import decode_session_data, encode_session_data
from .config import SessionBackendConfig, create_session_store
from .deadlines import DueWait
from .errors import (
    ConflictError,
    ErrorCode,
    InternalError,
    InvalidInputError,
    NotFoundError,
    PoolExhaustedError,
    SessionError,
    StoreClosedError,
    UnavailableError,
    UnknownOutcomeError,
)
from .mapping import keyed
from .schema import (
    Impersonation,
    InvocationDeadline,
    ReplyScope,
    SessionCursor,
    SessionData,
    SessionKey,
    TenantCtx,
)
from .sealing import Encryption
from .store import SessionEntry, SessionStore, StoreOptions

if TYPE_CHECKING:
    from .backends.redis.store import RedisSessionStore as RedisSessionStore

# `RedisSessionStore` is deliberately not in __all__: a star import must not import redis.
__all__ = [
    "DEFAULT_NAMESPACE",
    "ConflictError",
    "DueWait",
    "Encryption",
    "ErrorCode",
    "Impersonation",
    "InMemorySessionStore",
    "InternalError",
    "InvalidInputError",
    "InvocationDeadline",
    "NotFoundError",
    "PoolExhaustedError",
    "ReplyScope",
    "SessionBackendConfig",
    "SessionCursor",
    "SessionData",
    "SessionEntry",
    "SessionError",
    "SessionKey",
    "SessionStore",
    "StoreClosedError",
    "StoreOptions",
    "TenantCtx",
    "UnavailableError",
    "UnknownOutcomeError",
    "create_session_store",
    "decode_session_data",
    "encode_session_data",
    "keyed",
]


def __getattr__(name: str) -> Any:
    if name == "RedisSessionStore":
        from .backends.redis.store import RedisSessionStore

        return RedisSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
