"""The backend table: one row per way of running the store (topology, transport, server engine),
each with the event loops it runs on. One conformance suite runs on every cell (row x loop).

A row is data: `open()` builds a fresh store of its kind; the tests' fixtures find the servers
(`topology`, `server`) and run each test on every loop of `loops`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack

from ..config import SessionBackendConfig, create_session_store
from ..store import SessionStore, StoreOptions

if TYPE_CHECKING:
    from ..sealing import Encryption

T = TypeVar("T")

Topology = Literal["memory", "single", "sentinel", "cluster"]

# The event loops the stores are tested on: asyncio's own and uvloop (what `uvicorn[standard]`
# runs). The in-memory store also runs on trio (it awaits only anyio primitives).
LOOP_KINDS: tuple[str, ...] = ("asyncio", "uvloop")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-event-loop function for asyncio loop `kind` (`asyncio.Runner(loop_factory=...)`)."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown event loop {kind!r}; known: {', '.join(LOOP_KINDS)}")


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop of kind `loop`."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


@dataclass(frozen=True)
class Backend:
    """One row of the backend table that drives the conformance suite and the benchmarks."""

    id: str
    topology: Topology
    batching: bool = True  # Redis: calls auto-pipelined on shared connections (the default)
    server: str | None = None  # the server engine (SERVER_KINDS) holding a Redis row's keys
    loops: tuple[str, ...] = LOOP_KINDS  # the event loops this row's tests run on
    sealed: bool = False  # blobs encrypted (TEST_ENCRYPTION) and zstd-compressed at rest

    @property
    def needs_redis(self) -> bool:
        return self.topology != "memory"

    def open(
        self,
        *,
        redis_url: str | None = None,
        namespace: str,
        clock: Callable[[], float] | None = None,
        **store: Unpack[StoreOptions],
    ) -> SessionStore:
        """A fresh store of this kind with `store` options; Redis stores live under their own
        `namespace`; `clock` drives the in-memory store's expiry (Redis uses its own clock).
        `redis_url` is a plain URL (single), a redis+sentinel:// URL (sentinel) or the cluster's
        node URLs, comma-separated (cluster)."""
        if self.sealed:
            store = {"encryption": sealed_row_encryption(), "compression": "zstd", **store}
        if self.topology == "memory":
            if clock is not None:
                from ..backends.memory import InMemorySessionStore

                return InMemorySessionStore(clock=clock, **store)
            return create_session_store(SessionBackendConfig.in_memory(**store))
        if redis_url is None:
            raise ValueError(f"backend {self.id!r} needs a redis_url")
        if self.topology == "sentinel":
            config = SessionBackendConfig.redis_url(redis_url, namespace=namespace, **store)
        elif self.topology == "cluster":
            config = SessionBackendConfig.redis_cluster(
                redis_url.split(","), namespace=namespace, batching=self.batching, **store
            )
        else:
            config = SessionBackendConfig.redis_url(
                redis_url, namespace=namespace, batching=self.batching, **store
            )
        return create_session_store(config)


def sealed_row_encryption(*, accept_plaintext: bool = False) -> Encryption:
    """The sealed rows' key ring: one fixed, public test key (never use it for real data)."""
    from ..sealing import Encryption

    return Encryption(
        {"test-key-1": bytes(range(32))}, "test-key-1", accept_plaintext=accept_plaintext
    )


def _single_node_rows() -> tuple[Backend, ...]:
    """Every transport on every server engine (Redis's rows keep their historical ids)."""
    rows = []
    for server in ("redis", "valkey"):
        rows.append(Backend(server, "single", server=server))  # batched, the default
        rows.append(Backend(f"{server}-unbatched", "single", batching=False, server=server))
    return tuple(rows)


BACKENDS: tuple[Backend, ...] = (
    Backend("memory", "memory", loops=("asyncio", "trio")),
    # Sealed at rest (sealing.py): encrypted and compressed, the scripts checking owner digests.
    # Sealing is CPU work between the codec and the transport, the same on every loop (the plain
    # rows cover the loops): asyncio's alone keeps the suite short.
    Backend("memory-sealed", "memory", loops=("asyncio",), sealed=True),
    *_single_node_rows(),
    # redis-py's pool behind Sentinel (never batched); a primary, a replica, three sentinels.
    Backend("sentinel", "sentinel", batching=False, server="redis"),
    Backend("cluster", "cluster", server="redis"),  # 3 masters, batched per master
    Backend("redis-sealed", "single", server="redis", loops=("asyncio",), sealed=True),
    Backend("cluster-sealed", "cluster", server="redis", loops=("asyncio",), sealed=True),
)
