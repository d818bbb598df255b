"""The Redis backend, one room per concern:

- `store`: `RedisSessionStore`, the calls of the `SessionStore` API;
- `factory`: every way to build a store (options, a URL, Sentinel, a cluster, your own client),
  and the one way into it;
- `caller`: how calls reach Redis: the `Caller` protocol and the single-node caller (gate, time
  limits, retries); `sentinel`: the Sentinel primary pool and its caller; `cluster`: slot
  routing over one caller per master; `transport` + `connection`: the batching transport;
- `split`: a cluster's two-step calls on a caller's key;
- `errors`: the one mapping of redis-py failures to `SessionError`;
- `scripts` + `lua/`: the atomic steps and each one's arguments; `replies`: what each answers,
  as a result or a `SessionError`; `keys`: the key layouts;
- `options` (pool and topology options) and `urls` (URL parsing and redaction);
  `deadlines`: per-call time limits.

`keys`, `options`, `urls`, `scripts` and `replies` are Redis-free, so configuration never needs
the extra; `RedisSessionStore` (which imports redis-py) is resolved lazily for that reason.
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
