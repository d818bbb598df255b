"""The Redis store on every event loop in LOOP_KINDS (asyncio's own and uvloop's): its calls over
TCP, TLS and AUTH+SELECT, batched and not, and a fault in each step of a batched connection's
setup failing every call fast as `UnavailableError`, never a hang, with the store working again
once the fault is gone.

Each test drives its own loop through `asyncio.Runner(loop_factory=...)`, so the tests are
synchronous. Faults are monkeypatched in only where a real server cannot produce them: an
exception raised inside a protocol callback or inside the TLS machinery during setup.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import pytest

from greentic_session import RedisSessionStore, UnavailableError, UnknownOutcomeError
from greentic_session.backends.redis.connection import BatchedConnection
from greentic_session.testing import LOOP_KINDS, RedisServer, TLSFiles, loop_factory
from tests.test_redis_faults import assert_store_works, batching_pool, ctx_of, marked, raw_client
from tests.test_redis_security import store_calls, texts_of

T = TypeVar("T")

PASSWORD = "l00p-Pa55-8b2e41"
DB = 3
CONNECT_TIMEOUT = 1.5
# Slack past connect_timeout for a call whose setup fault only the deadline ends (a busy box).
MARGIN = 0.5
# A fault the connection sees fails its call well before connect_timeout: three tries (a read
# retries a lost connection twice, 0.12 s of pauses) on loopback take a few milliseconds each.
PROMPT = CONNECT_TIMEOUT / 2
FAULT_TEXT = "injected-fault-5d93c0"  # must show in no error

LOOPS = [pytest.param(kind, id=kind) for kind in LOOP_KINDS]


def run_on(kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` on a fresh event loop of `kind`, closed afterwards."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main())


async def within(seconds: float, call: Awaitable[T]) -> T:
    """Await `call`; fail the test if it takes longer than `seconds` (a hang must not hang)."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        pytest.fail(f"a store call took more than {seconds}s")


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tls_dir: Path) -> TLSFiles:
    """The conftest's throwaway CA and server certificate, as a TLS listener takes them."""
    return TLSFiles(
        str(tls_dir / "server.pem"), str(tls_dir / "server.key"), str(tls_dir / "ca.pem")
    )


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServer]:
    """A private plain-text server that requires a password."""
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        yield server


@pytest.fixture(scope="module")
def tls_auth_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """A private TLS-only server that requires a password: every setup step happens on it."""
    with RedisServer(tls=tls_files, extra_args=["--requirepass", PASSWORD]) as server:
        yield server


def auth_url(server: RedisServer) -> str:
    """`server`'s URL with the password and database DB (so setup sends AUTH and SELECT)."""
    scheme = "rediss" if server.tls else "redis"
    return f"{scheme}://:{PASSWORD}@127.0.0.1:{server.port}/{DB}"


# -- the store's calls on each loop --------------------------------------------------------------


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", LOOPS)
def test_store_calls_over_tcp(kind: str, batching: bool, redis_url: str, namespace: str) -> None:
    """On each loop, create, get, find, update and remove work over plain TCP, batched or not,
    and 50 concurrent callers (batched: sharing writes) each read back their own session."""

    async def main() -> None:
        store = RedisSessionStore.from_url(redis_url, namespace=namespace, batching=batching)
        async with store:
            await within(10, assert_store_works(store, f"tcp-{kind}"))
            users = [f"many-{kind}-{n}" for n in range(50)]
            keys = await within(
                10,
                asyncio.gather(*(store.create_session(ctx_of(u), marked(u, u)) for u in users)),
            )
            read = await within(10, asyncio.gather(*(store.get_session(key) for key in keys)))
            assert read == [marked(u, u) for u in users]
            await within(10, asyncio.gather(*(store.remove_session(key) for key in keys)))

    run_on(kind, main)


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", LOOPS)
def test_store_calls_over_tls(
    kind: str, batching: bool, tls_server: RedisServer, tls_files: TLSFiles, namespace: str
) -> None:
    """On each loop, create, get, find, update and remove work over TLS, batched or not."""

    async def main() -> None:
        store = RedisSessionStore.from_url(
            tls_server.url, namespace=namespace, batching=batching, tls_ca_file=tls_files.ca
        )
        async with store:
            await within(10, assert_store_works(store, f"tls-{kind}"))

    run_on(kind, main)


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", LOOPS)
def test_store_calls_with_auth_and_select(
    kind: str, batching: bool, auth_server: RedisServer, namespace: str
) -> None:
    """On each loop, with a password and database 3 in the URL, the calls work and the session
    lands in database 3 (SELECT ran), batched or not."""

    async def main() -> None:
        store = RedisSessionStore.from_url(
            auth_url(auth_server), namespace=namespace, batching=batching
        )
        async with store:
            await within(10, assert_store_works(store, f"auth-{kind}"))
            user = f"selected-{kind}"
            key = await within(10, store.create_session(ctx_of(user), marked(user, user)))
            stored = store.keys.session(key)
            base = f"redis://:{PASSWORD}@127.0.0.1:{auth_server.port}"
            async with raw_client(f"{base}/0") as db0, raw_client(f"{base}/{DB}") as selected:
                assert await db0.exists(stored) == 0
                assert await selected.exists(stored) == 1
            await within(10, store.remove_session(key))

    run_on(kind, main)


# -- a fault in each setup step ------------------------------------------------------------------


class InjectedFault(RuntimeError):
    """The exception a fault raises (a bug in a callback, say: not an OSError)."""


def _raise(*args: object, **kwargs: object) -> None:
    raise InjectedFault(FAULT_TEXT)


def _on_nth(cls: type, name: str, nth: int) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: `cls.name` raises on its `nth` call (0-based) for each object, else runs."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        original = getattr(cls, name)
        calls: WeakKeyDictionary[object, int] = WeakKeyDictionary()

        def faulty(self: object, *args: object) -> object:
            count = calls.get(self, 0)
            calls[self] = count + 1
            if count == nth:
                raise InjectedFault(FAULT_TEXT)
            return original(self, *args)

        monkeypatch.setattr(cls, name, faulty)

    return inject


def _replacing(cls: type, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: `cls.name` itself raises (the loop, not the connection, sees the exception)."""

    def inject(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cls, name, _raise)

    return inject


@dataclass(frozen=True)
class Fault:
    inject: Callable[[pytest.MonkeyPatch], None]
    tls_only: bool = False
    # The setup sees the exception and fails at once; else (it never reaches any code of the
    # store: the loop logs it and drops it) only connect_timeout ends the setup.
    prompt: bool = True
    # The connection catches it inside its callback: nothing reaches the loop's error log.
    caught: bool = False


# The setup, in order: TCP connect, TLS handshake, connection_made, then AUTH and SELECT sent in
# one write and their replies read (in data_received), the first reply AUTH's.
FAULTS = {
    "connection_made_raises": Fault(_replacing(BatchedConnection, "connection_made")),
    "inside_connection_made": Fault(_on_nth(BatchedConnection, "_attach", 0), caught=True),
    # The loop's own SSL protocol runs the first step from a callback of its own, logs what it
    # raises and never wakes the connect: only the deadline ends it.
    "tls_handshake_first_step": Fault(
        _on_nth(ssl.SSLObject, "do_handshake", 0), tls_only=True, prompt=False
    ),
    # The next step runs as the server's handshake bytes arrive (a data callback).
    "tls_handshake_on_server_reply": Fault(
        _on_nth(ssl.SSLObject, "do_handshake", 1), tls_only=True
    ),
    "auth_reply_handling": Fault(_on_nth(BatchedConnection, "_deliver", 0), caught=True),
    "select_reply_handling": Fault(_on_nth(BatchedConnection, "_deliver", 1), caught=True),
    "data_received_raises": Fault(_replacing(BatchedConnection, "data_received")),
}

FAULT_CASES = [
    pytest.param(name, tls, id=f"{name}-{'tls' if tls else 'tcp'}")
    for name, fault in FAULTS.items()
    for tls in (True, False)
    if tls or not fault.tls_only
]


@pytest.mark.parametrize(("fault_name", "tls"), FAULT_CASES)
@pytest.mark.parametrize("kind", LOOPS)
def test_a_setup_fault_fails_every_call_fast_and_typed(
    kind: str,
    fault_name: str,
    tls: bool,
    *,
    request: pytest.FixtureRequest,
    tls_files: TLSFiles,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With an exception injected into one step of the batched connection's setup, every store
    call fails with UnavailableError (not an unknown outcome: nothing was sent) within
    connect_timeout plus a margin (at once when the setup sees the exception), showing neither
    the fault's text nor the password, leaving no connection open; without the fault the same
    store works."""
    fault = FAULTS[fault_name]
    server: RedisServer = request.getfixturevalue("tls_auth_server" if tls else "auth_server")

    async def main() -> None:
        store = RedisSessionStore.from_url(
            auth_url(server),
            namespace=namespace,
            connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
            tls_ca_file=tls_files.ca if tls else None,
        )
        loop = asyncio.get_running_loop()
        async with store:
            with monkeypatch.context() as patch:
                fault.inject(patch)
                for name, call in store_calls(store).items():
                    started = loop.time()
                    with pytest.raises(UnavailableError) as raised:
                        await within(CONNECT_TIMEOUT + MARGIN, call())
                    took = loop.time() - started
                    error = raised.value
                    assert not isinstance(error, UnknownOutcomeError), name
                    if fault.prompt:
                        assert took < PROMPT, f"{name} took {took:.3f}s"
                    for text in texts_of(error):
                        assert FAULT_TEXT not in text
                        assert PASSWORD not in text
                    assert batching_pool(store).stats().live == 0, name
            await within(10, assert_store_works(store, "after"))

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_on(kind, main)
    if fault.caught:
        assert not caplog.records, [record.getMessage() for record in caplog.records]
