"""The Redis backend: `store` (the calls), `client` (gate, time limits, retries), `errors` (the one
mapping of redis-py failures to `SessionError`), `scripts` + `lua/` (atomic steps), `keys` (the key
layout), `options` (URL and pool options), `deadlines` (per-call time limits).

Only `store`, `client`, `errors` and `scripts` import redis-py; `keys` and `options` are Redis-free,
so configuration never needs the extra. `RedisSessionStore` is resolved lazily for that reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import RedisSessionStore as RedisSessionStore

__all__ = ["RedisSessionStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisSessionStore":
        from .store import RedisSessionStore

        return RedisSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
