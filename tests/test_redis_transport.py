"""The batching transport against real redis-server processes: batching, setup, cancellation,
link failures, transactions, backpressure and the socket_timeout watchdog.

Faults come from `tests.faultproxy.FaultProxy` (delay, held replies, lost replies) between the
transport and a real server; no Redis behaviour is imitated.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from greentic_session.backends.redis.transport import (
    BatchingPool,
    ConnectError,
    ConnectionLostError,
    NotSentError,
    PoolBusyError,
    ReplyTimeoutError,
    WriteOutcomeUnknownError,
)
from greentic_session.testing import RedisServer
from tests.faultproxy import FaultProxy

PASSWORD = "s3cr3t-Pa55-7f3a9c"
WRONG_PASSWORD = "wr0ng-Pa55-5e1d2b"


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """Keys no other test uses, deleted afterwards from the shared server (private servers go
    away with their keys)."""
    name = f"transport-test-{uuid.uuid4().hex}"
    yield name
    async with raw_client(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{name}:*", count=500)]
        if keys:
            await client.delete(*keys)


@asynccontextmanager
async def raw_client(url: str, **options: object) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url, **options)
    try:
        yield client
    finally:
        await client.aclose()


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def written(pool: BatchingPool, count: int) -> None:
    """Yield to the loop until `count` requests in all have been written by the pool."""
    for _ in range(10_000):
        if pool.stats().requests >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {pool.stats().requests} of {count} requests were written")


# -- batching ------------------------------------------------------------------------------------


async def test_commands_of_one_loop_turn_go_out_as_one_write(redis_url: str, prefix: str) -> None:
    """200 tasks issuing GETs in the same loop turn share one socket write, and each gets the
    value of its own key (replies resolve in FIFO order)."""
    async with raw_client(redis_url) as raw:
        await raw.mset({f"{prefix}:{i}": f"value-{i}" for i in range(200)})
    async with BatchingPool.from_url(redis_url, connections=1) as pool:
        await pool.execute("PING")
        before = pool.stats()
        replies = await asyncio.gather(*(pool.execute("GET", f"{prefix}:{i}") for i in range(200)))
        after = pool.stats()
    assert replies == [f"value-{i}".encode() for i in range(200)]
    assert after.batches - before.batches == 1
    assert after.requests - before.requests == 200


async def test_sequential_calls_use_one_connection(redis_url: str, prefix: str) -> None:
    """A lone caller never needs a second connection: a connection opens only when all are busy."""
    async with BatchingPool.from_url(redis_url, connections=4) as pool:
        for i in range(20):
            assert await pool.execute("SET", f"{prefix}:k", str(i), write=True) == b"OK"
            assert await pool.execute("GET", f"{prefix}:k") == str(i).encode()
        assert pool.stats().opened == 1


async def test_error_replies_raise_redis_py_exception_classes(redis_url: str, prefix: str) -> None:
    """Error replies raise redis-py's own classes (NoScriptError, ResponseError), and the
    connection carries on with the next command."""
    async with BatchingPool.from_url(redis_url, connections=1) as pool:
        with pytest.raises(redis_errors.NoScriptError):
            await pool.execute("EVALSHA", "0" * 40, 0)
        await pool.execute("SET", f"{prefix}:s", "text", write=True)
        with pytest.raises(redis_errors.ResponseError, match="not an integer"):
            await pool.execute("INCR", f"{prefix}:s", write=True)
        with pytest.raises(redis_errors.DataError):
            await pool.execute("SET", f"{prefix}:s", object(), write=True)
        assert await pool.execute("GET", f"{prefix}:s") == b"text"
        assert pool.stats().opened == 1


# -- connection setup ----------------------------------------------------------------------------


async def test_url_database_is_selected(redis_url: str, prefix: str) -> None:
    """The db in the URL path is selected on every connection, as redis-py parses it."""
    url = redis_url.rsplit("/", 1)[0] + "/3"
    async with BatchingPool.from_url(url) as pool:
        await pool.execute("SET", f"{prefix}:db", "three", write=True)
    async with raw_client(url) as db3, raw_client(redis_url.rsplit("/", 1)[0] + "/0") as db0:
        assert await db3.get(f"{prefix}:db") == b"three"
        assert await db0.get(f"{prefix}:db") is None
        await db3.delete(f"{prefix}:db")


@pytest.fixture(scope="module")
def private_server() -> Iterator[RedisServer]:
    """A server of this module's own, with a unix socket: ACL users and restarts are
    server-wide. The socket lies under /tmp: its path must be under 108 bytes, wherever the
    checkout (and so nox's TMPDIR) is."""
    with tempfile.TemporaryDirectory(prefix="gs-", dir="/tmp") as folder:
        extra = ("--unixsocket", f"{folder}/redis.sock", "--unixsocketperm", "700")
        with RedisServer(extra_args=extra) as server:
            yield server


def unix_url(server: RedisServer, db: int) -> str:
    index = server.extra_args.index("--unixsocket")
    return f"unix://{server.extra_args[index + 1]}?db={db}"


async def test_unix_socket_with_database(private_server: RedisServer, prefix: str) -> None:
    """A unix:// URL connects over the socket and selects the db from its query."""
    async with BatchingPool.from_url(unix_url(private_server, 2)) as pool:
        await pool.execute("SET", f"{prefix}:unix", "yes", write=True)
        assert "redis.sock" in repr(pool)
    async with raw_client(private_server.url.rsplit("/", 1)[0] + "/2") as raw:
        assert await raw.get(f"{prefix}:unix") == b"yes"


@asynccontextmanager
async def acl_user(server: RedisServer, name: str, keys: str) -> AsyncIterator[str]:
    """An ACL user allowed every command on keys matching `keys`; yields its URL."""
    async with raw_client(server.url) as admin:
        await admin.acl_setuser(
            name, enabled=True, passwords=[f"+{PASSWORD}"], keys=[keys], categories=["+@all"]
        )
        try:
            yield f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"
        finally:
            await admin.acl_deluser(name)


async def test_acl_user_from_the_url(private_server: RedisServer, prefix: str) -> None:
    """Username and password from the URL authenticate an ACL user; its key restriction shows
    as redis-py's NoPermissionError, and the connection stays usable."""
    async with (
        acl_user(private_server, "transport-app", f"{prefix}:*") as url,
        BatchingPool.from_url(url, connections=1) as pool,
    ):
        assert await pool.execute("SET", f"{prefix}:mine", "ok", write=True) == b"OK"
        with pytest.raises(redis_errors.NoPermissionError):
            await pool.execute("GET", "elsewhere:key")
        assert await pool.execute("GET", f"{prefix}:mine") == b"ok"


async def test_password_from_options(private_server: RedisServer, prefix: str) -> None:
    """`username`/`password` options authenticate like URL credentials do."""
    async with (
        acl_user(private_server, "transport-opts", f"{prefix}:*"),
        BatchingPool.from_url(
            private_server.url, username="transport-opts", password=PASSWORD
        ) as pool,
    ):
        assert await pool.execute("SET", f"{prefix}:opt", "ok", write=True) == b"OK"


async def test_wrong_password_is_a_typed_error_that_never_shows_it(
    private_server: RedisServer, prefix: str
) -> None:
    """A wrong password raises redis-py's AuthenticationError for every caller waiting on the
    connection, the password shows in no error text, and nothing is left open."""
    async with acl_user(private_server, "transport-wrong", f"{prefix}:*") as url:
        wrong = url.replace(PASSWORD, WRONG_PASSWORD)
        async with BatchingPool.from_url(wrong) as pool:
            results = await asyncio.gather(
                *(pool.execute("GET", f"{prefix}:x") for _ in range(5)), return_exceptions=True
            )
            assert pool.stats().live == 0
            assert WRONG_PASSWORD not in repr(pool)
    for error in results:
        assert isinstance(error, redis_errors.AuthenticationError)
        seen: BaseException | None = error
        while seen is not None:
            assert WRONG_PASSWORD not in str(seen)
            assert WRONG_PASSWORD not in repr(seen.args)
            seen = seen.__cause__ or seen.__context__


async def test_unreachable_server_raises_connect_error() -> None:
    """With nothing listening, a call raises ConnectError (a NotSentError: nothing was sent)."""
    async with BatchingPool.from_url("redis://127.0.0.1:1/0", connect_timeout=1.0) as pool:
        with pytest.raises(ConnectError, match=r"127\.0\.0\.1:1") as raised:
            await pool.execute("SET", "k", "v", write=True)
    assert isinstance(raised.value, NotSentError)


async def test_reconnects_lazily_after_a_server_restart(private_server: RedisServer) -> None:
    """When the server goes away, calls fail with typed errors; once it is back, the next call
    opens a new connection and succeeds."""
    async with BatchingPool.from_url(private_server.url, connect_timeout=1.0) as pool:
        assert await pool.execute("PING") == b"PONG"
        private_server.stop()
        with pytest.raises(redis_errors.ConnectionError):
            await pool.execute("PING")
        with pytest.raises(ConnectError):
            await pool.execute("PING")
        private_server.start()
        assert await pool.execute("PING") == b"PONG"
        assert pool.stats().opened == 2


# -- TLS -------------------------------------------------------------------------------------


async def test_tls_with_the_ca(tls_server: RedisServer, tls_dir: Path, prefix: str) -> None:
    """rediss:// with the CA file given talks TLS, batched."""
    async with BatchingPool.from_url(tls_server.url, ssl_ca_certs=str(tls_dir / "ca.pem")) as pool:
        await pool.execute("SET", f"{prefix}:tls", "secure", write=True)
        replies = await asyncio.gather(*(pool.execute("GET", f"{prefix}:tls") for _ in range(50)))
    assert replies == [b"secure"] * 50


async def test_tls_with_another_ca_is_refused(tls_server: RedisServer, tls_dir: Path) -> None:
    """A client that does not trust the server's CA fails with ConnectError, never in clear."""
    other = str(tls_dir / "other-ca.pem")
    async with BatchingPool.from_url(tls_server.url, ssl_ca_certs=other) as pool:
        with pytest.raises(ConnectError, match="certificate"):
            await pool.execute("PING")


async def test_plaintext_to_a_tls_port_fails_typed(tls_server: RedisServer) -> None:
    """redis:// to a TLS-only port fails with a typed connection error, never hangs."""
    async with BatchingPool.from_url(
        tls_server.url.replace("rediss://", "redis://"), socket_timeout=2.0
    ) as pool:
        with pytest.raises(redis_errors.ConnectionError):
            await pool.execute("PING")


# -- cancellation --------------------------------------------------------------------------------


async def test_cancelled_before_its_batch_is_written_is_never_sent(
    redis_url: str, prefix: str
) -> None:
    """A call cancelled in the loop turn it was issued in never reaches Redis."""
    async with BatchingPool.from_url(redis_url, connections=1) as pool:
        await pool.execute("PING")
        before = pool.stats().requests
        task = asyncio.create_task(pool.execute("SET", f"{prefix}:never", "x", write=True))
        await asyncio.sleep(0)  # the task runs and queues its command; the batch is not out yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pool.execute("GET", f"{prefix}:never") is None
        assert pool.stats().requests == before + 1  # only the GET was written


async def test_cancelled_after_the_write_keeps_its_place(redis_url: str, prefix: str) -> None:
    """A call cancelled after its command was written: Redis applies it, its reply is read and
    dropped, and the next caller on the same connection gets its own reply."""
    async with (
        FaultProxy(port_of(redis_url)) as proxy,
        BatchingPool.from_url(proxy.url, connections=1) as pool,
    ):
        await pool.execute("SET", f"{prefix}:b", "B", write=True)
        proxy.hold_replies()
        start = pool.stats().requests
        task = asyncio.create_task(pool.execute("INCR", f"{prefix}:a", write=True))
        await written(pool, start + 1)
        task.cancel()
        follower = asyncio.create_task(pool.execute("GET", f"{prefix}:b"))
        await written(pool, start + 2)
        proxy.release_replies()
        assert await follower == b"B"
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pool.execute("GET", f"{prefix}:a") == b"1"
        assert pool.stats().opened == 1


async def test_ten_thousand_random_cancellations_never_misroute_a_reply(
    redis_url: str, prefix: str
) -> None:
    """Through a delaying proxy, 10,000 calls cancelled at random points (before and after their
    write) never make any caller receive another call's reply, and the connections stay up."""
    port = port_of(redis_url)
    rng = random.Random(1307)
    callers = 64
    target = 10_000
    cancelled = completed = submitted = 0

    async def one_call(name: str, seq: int) -> None:
        nonlocal completed
        kind = seq % 3
        if kind == 0:
            reply = await pool.execute("ECHO", f"{name}:{seq}")
            assert reply == f"{name}:{seq}".encode(), f"{name} got {reply!r}"
        elif kind == 1:
            reply = await pool.execute("SET", f"{prefix}:{name}", f"{name}:{seq}", write=True)
            assert reply == b"OK", f"{name} got {reply!r}"
        else:
            reply = await pool.execute("GET", f"{prefix}:{name}")
            assert reply is None or reply.startswith(f"{name}:".encode()), f"{name}: {reply!r}"
        completed += 1

    async def caller(name: str) -> None:
        nonlocal cancelled, submitted
        seq = 0
        while cancelled < target:
            seq += 1
            submitted += 1
            task = asyncio.create_task(one_call(name, seq))
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)  # a random number of loop turns before the cancel
            if rng.random() < 0.7 and not task.done():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                cancelled += 1

    async with (
        FaultProxy(port, max_delay=0.0005, seed=7) as proxy,
        BatchingPool.from_url(proxy.url, connections=2) as pool,
    ):
        await asyncio.wait_for(
            asyncio.gather(*(caller(f"caller{n}") for n in range(callers))), timeout=120
        )
        stats = pool.stats()
        for n in range(callers):  # every connection is still in sync
            assert await pool.execute("ECHO", f"final{n}") == f"final{n}".encode()
    assert cancelled >= target
    assert stats.opened == stats.live  # no connection was dropped
    assert stats.requests < submitted, "some cancelled calls were never sent"
    assert stats.requests > completed, "some cancelled calls were sent and their reply dropped"


# -- link failures -------------------------------------------------------------------------------


async def test_lost_link_mid_batch_fails_writes_as_unknown_and_never_resends(
    redis_url: str, prefix: str
) -> None:
    """When the link drops after a batch was applied but before its replies came back, every
    write raises WriteOutcomeUnknownError and every read ConnectionLostError; nothing is re-sent
    (each INCR applied exactly once), and the next call reconnects."""
    port = port_of(redis_url)
    async with FaultProxy(port) as proxy, BatchingPool.from_url(proxy.url, connections=1) as pool:
        await pool.execute("PING")
        proxy.lose_replies(1)
        writes = [pool.execute("INCR", f"{prefix}:{i}", write=True) for i in range(10)]
        reads = [pool.execute("GET", f"{prefix}:{i}") for i in range(10)]
        results = await asyncio.gather(*writes, *reads, return_exceptions=True)
        for error in results[:10]:
            assert isinstance(error, WriteOutcomeUnknownError), repr(error)
        for error in results[10:]:
            assert isinstance(error, ConnectionLostError), repr(error)
            assert not isinstance(error, WriteOutcomeUnknownError)
        values = await asyncio.gather(*(pool.execute("GET", f"{prefix}:{i}") for i in range(10)))
        assert values == [b"1"] * 10
        assert pool.stats().opened == 2


# -- transactions --------------------------------------------------------------------------------


async def test_transaction_is_one_unit_nothing_lands_inside(redis_url: str, prefix: str) -> None:
    """Transactions issued beside plain commands on the same connection in the same loop turns
    never capture another caller's command (nobody gets QUEUED) and run atomically."""
    counter = f"{prefix}:counter"
    async with BatchingPool.from_url(redis_url, connections=1) as pool:

        async def transaction() -> list[object]:
            return await pool.transaction([("INCR", counter), ("INCR", counter), ("GET", counter)])

        calls = [transaction() if i % 4 == 0 else pool.execute("INCR", counter) for i in range(400)]
        results = await asyncio.gather(*calls)
        assert pool.stats().opened == 1
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, list)
            first, second, read = result
            assert isinstance(first, int)
            assert (second, read) == (first + 1, str(first + 1).encode())
        else:
            assert isinstance(result, int), f"a plain command got {result!r}"


async def test_transaction_errors_are_redis_py_errors(redis_url: str, prefix: str) -> None:
    """A command refused while queueing raises its own error and nothing runs; a command
    failing inside EXEC raises its error; the connection is usable afterwards."""
    async with BatchingPool.from_url(redis_url, connections=1) as pool:
        with pytest.raises(redis_errors.ResponseError, match="wrong number of arguments"):
            await pool.transaction([("SET", f"{prefix}:t", "1"), ("SET", f"{prefix}:t")])
        assert await pool.execute("GET", f"{prefix}:t") is None
        with pytest.raises(redis_errors.ResponseError, match="not an integer"):
            await pool.transaction([("SET", f"{prefix}:t", "x"), ("INCR", f"{prefix}:t")])
        assert await pool.execute("GET", f"{prefix}:t") == b"x"
        assert await pool.execute("PING") == b"PONG"


async def test_cancelled_transaction_never_leaves_the_connection_inside_multi(
    redis_url: str, prefix: str
) -> None:
    """A transaction cancelled after its write still ran whole (EXEC was in the same write) and
    the next command on that connection runs outside MULTI; one cancelled before its write never
    runs at all."""
    port = port_of(redis_url)
    async with FaultProxy(port) as proxy, BatchingPool.from_url(proxy.url, connections=1) as pool:
        await pool.execute("PING")
        unsent = asyncio.create_task(pool.transaction([("SET", f"{prefix}:u", "1")]))
        await asyncio.sleep(0)
        unsent.cancel()
        proxy.hold_replies()
        start = pool.stats().requests
        sent = asyncio.create_task(
            pool.transaction([("SET", f"{prefix}:s", "1"), ("SET", f"{prefix}:s2", "2")])
        )
        await written(pool, start + 1)
        sent.cancel()
        proxy.release_replies()
        assert await pool.execute("INCR", f"{prefix}:after", write=True) == 1
        for task in (unsent, sent):
            with pytest.raises(asyncio.CancelledError):
                await task
        values = await asyncio.gather(
            *(pool.execute("GET", f"{prefix}:{name}") for name in ("u", "s", "s2"))
        )
        assert values == [None, b"1", b"2"]
        assert pool.stats().opened == 1


# -- backpressure and load -----------------------------------------------------------------------


async def test_in_flight_bound_waits_then_fails_fast(redis_url: str, prefix: str) -> None:
    """At max_in_flight unanswered requests a call waits; past queue_timeout it raises
    PoolBusyError (nothing sent); once replies free room, waiting calls go through."""
    port = port_of(redis_url)
    async with (
        FaultProxy(port) as proxy,
        BatchingPool.from_url(proxy.url, connections=1, max_in_flight=4, queue_timeout=0.2) as pool,
    ):
        await pool.execute("PING")
        proxy.hold_replies()
        held = [
            asyncio.create_task(pool.execute("INCR", f"{prefix}:n", write=True)) for _ in range(4)
        ]
        await written(pool, 5)
        with pytest.raises(PoolBusyError, match="No connection available") as raised:
            await pool.execute("INCR", f"{prefix}:n", write=True)
        assert isinstance(raised.value, NotSentError)
        waiting = asyncio.create_task(pool.execute("GET", f"{prefix}:n"))
        await asyncio.sleep(0)
        proxy.release_replies()
        assert sorted(await asyncio.gather(*held)) == [1, 2, 3, 4]
        assert await waiting == b"4"


async def test_bytes_bound_lets_a_huge_value_through_alone(redis_url: str, prefix: str) -> None:
    """A request bigger than max_in_flight_bytes goes out on an idle connection; while it is
    unanswered, the next big one waits and then fails fast."""
    port = port_of(redis_url)
    big = b"x" * 8192
    async with (
        FaultProxy(port) as proxy,
        BatchingPool.from_url(
            proxy.url, connections=1, max_in_flight_bytes=4096, queue_timeout=0.2
        ) as pool,
    ):
        await pool.execute("PING")
        proxy.hold_replies()
        first = asyncio.create_task(pool.execute("SET", f"{prefix}:big", big, write=True))
        await written(pool, 2)
        with pytest.raises(PoolBusyError):
            await pool.execute("SET", f"{prefix}:big2", big, write=True)
        proxy.release_replies()
        assert await first == b"OK"
        assert await pool.execute("STRLEN", f"{prefix}:big") == 8192


async def test_calls_avoid_the_connection_carrying_a_huge_value(
    redis_url: str, prefix: str
) -> None:
    """While one connection carries an unanswered multi-megabyte request, new small calls go
    to the other connection (least-loaded choice counts bytes)."""
    port = port_of(redis_url)
    async with FaultProxy(port) as proxy, BatchingPool.from_url(proxy.url, connections=2) as pool:
        await asyncio.gather(*(pool.execute("PING") for _ in range(50)))
        await asyncio.gather(*(pool.execute("PING") for _ in range(50)))
        assert pool.stats().live == 2
        proxy.hold_replies()
        huge = asyncio.create_task(pool.execute("SET", f"{prefix}:huge", b"h" * 4_000_000))
        await written(pool, pool.stats().requests + 1)
        before = pool.stats().written
        small = [asyncio.create_task(pool.execute("GET", f"{prefix}:x")) for _ in range(20)]
        await written(pool, pool.stats().requests + 20)
        after = pool.stats().written
        grew = [b - a for a, b in zip(before, after, strict=True)]
        assert sorted(grew) == [0, 20], f"small calls were split {grew}"
        proxy.release_replies()
        assert await huge == b"OK"
        assert await asyncio.gather(*small) == [None] * 20


# -- socket_timeout ------------------------------------------------------------------------------


async def test_socket_timeout_fails_the_connections_calls_and_drops_it(
    redis_url: str, prefix: str
) -> None:
    """When the oldest unanswered reply is older than socket_timeout, every call in flight on
    that connection raises ReplyTimeoutError (saying whether it was a write), the connection is
    dropped, and the next call opens a new one."""
    port = port_of(redis_url)
    async with (
        FaultProxy(port) as proxy,
        BatchingPool.from_url(proxy.url, connections=1, socket_timeout=0.3) as pool,
    ):
        await pool.execute("PING")
        proxy.hold_replies()
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            pool.execute("GET", f"{prefix}:k"),
            pool.execute("SET", f"{prefix}:k", "v", write=True),
            return_exceptions=True,
        )
        elapsed = loop.time() - started
        read, write = results
        assert isinstance(read, ReplyTimeoutError)
        assert not read.write
        assert isinstance(write, ReplyTimeoutError)
        assert write.write
        assert 0.3 <= elapsed < 2.0
        assert pool.stats().live == 0
        proxy.release_replies()
        assert await pool.execute("GET", f"{prefix}:k") == b"v"
        assert pool.stats().opened == 2
