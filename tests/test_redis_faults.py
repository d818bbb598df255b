"""Redis under faults: crashes, cancellations, a saturated pool, corrupt data, races, lost replies.

Every fault is real: a killed redis-server, a proxy that delays, holds or drops real replies, or
keys overwritten with a raw client. Each store call is bounded, so a hang fails instead of stalling.
Sections 5 and 6 of this fault list (ACL, TLS, secrets) are in test_redis_security.py.

Every test runs on every cell of the backend table that opens a Redis store on a plain URL: both
transports, `redis` (batched, the default: a few shared auto-pipelined connections) and
`redis-unbatched` (redis-py's pool), on both server engines (Redis, Valkey) and both loops
(asyncio, uvloop). Where the two transports differ by design (what bounds the connections, what a
saturated pool is), the test checks each one's own bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import NamedTuple, TypeVar

import msgspec
import pytest
import redis.asyncio as aioredis

from greentic_session import (
    ConflictError,
    ErrorCode,
    InternalError,
    NotFoundError,
    PoolExhaustedError,
    RedisSessionStore,
    SessionData,
    SessionKey,
    TenantCtx,
    UnavailableError,
    UnknownOutcomeError,
    decode_session_data,
)
from greentic_session.backends.redis.connection import pack
from greentic_session.backends.redis.keys import RedisKeys
from greentic_session.backends.redis.transport import (
    DEFAULT_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT,
    BatchingPool,
)
from greentic_session.fence import UserSlot, scope_of
from greentic_session.sealing import Sealer
from greentic_session.testing import Backend, RedisServer, find_server, free_port
from greentic_session.testing.backends import sealed_row_encryption
from tests.conftest import STORE_PARAMS, drop_namespace, make_data, server_url
from tests.faultproxy import FaultProxy
from tests.identities import ALICE
from tests.stores import open_store

T = TypeVar("T")

CALL_BOUND = 5.0  # no single store call may take longer: past it, the call counts as hung
WAIT_BOUND = 30.0  # bound on waiting for a whole phase of a scenario


def ctx_of(user: str) -> TenantCtx:
    return ALICE.with_user(user)


def marked(user: str, marker: str, *, node: str = "node.wait") -> SessionData:
    """Data owned by `user` whose context_json carries a unique `marker`."""
    return make_data(ctx_of(user), node=node, state=json.dumps({"marker": marker}))


def marker_of(data: SessionData) -> str:
    marker: str = json.loads(data.context_json)["marker"]
    return marker


async def bounded(call: Awaitable[T]) -> T:
    """Await one store call; fail the test if it takes longer than CALL_BOUND."""
    try:
        async with asyncio.timeout(CALL_BOUND):
            return await call
    except TimeoutError:
        pytest.fail(f"a store call hung for more than {CALL_BOUND}s")


# The backend table's rows that open a Redis store on one plain URL: batched and redis-py's pool,
# on each server engine (the cluster's faults are tests/test_redis_cluster.py's).
TRANSPORTS = [param for param in STORE_PARAMS if param.values[0].topology == "single"]
DEFAULT_TRANSPORT: Backend = TRANSPORTS[0].values[0]  # the batched row, the store's default


@pytest.fixture(params=TRANSPORTS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """This suite's rows of the backend table (each on its loops)."""
    row: Backend = request.param
    return row


@pytest.fixture
def transport(backend: Backend) -> Backend:
    """The backend row a test opens its stores with: each fault runs on both transports."""
    return backend


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client for planting faults and inspecting keys."""
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def pool_counts(store: RedisSessionStore) -> tuple[int, int]:
    """(connections in use, connections in total) of the store's redis-py pool."""
    pool = store.client.connection_pool
    in_use = len(pool._in_use_connections)
    return in_use, in_use + len(pool._available_connections)


def batching_pool(store: RedisSessionStore) -> BatchingPool:
    """The batched store's transport (built on the store's first call)."""
    pool = store.caller.batch
    assert pool is not None, "a batched store made no call yet, or is not batched"
    return pool


async def assert_nothing_left_in_flight(store: RedisSessionStore) -> None:
    """The batched transport kept every shared connection (none dropped) and, once a PING has
    gone through each (replies come in order), none has a request still waiting for a reply."""
    pool = batching_pool(store)
    stats = pool.stats()
    assert stats.opened == stats.live, "a shared connection was dropped"
    assert stats.live <= DEFAULT_CONNECTIONS
    for connection in pool._live:
        assert await bounded(connection.submit(pack(("PING",)), write=False)) == b"PONG"
        assert connection.outstanding == 0, "a request was left waiting for its reply"


@pytest.fixture(scope="module")
def fault_servers() -> Iterator[dict[str, RedisServer]]:
    """This module's private servers, one per engine, started on first use: their command
    statistics are this module's."""
    servers: dict[str, RedisServer] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.close()


@pytest.fixture
def fault_server(fault_servers: dict[str, RedisServer], transport: Backend) -> RedisServer:
    """The module's private server of the engine `transport` runs on."""
    kind = transport.server or "redis"
    if kind not in fault_servers:
        binary = find_server(kind)
        assert binary is not None, f"no {kind}-server (the backend fixture checks)"
        fault_servers[kind] = RedisServer(binary=binary).start()
    return fault_servers[kind]


@pytest.fixture
async def fault_raw(fault_server: RedisServer, namespace: str) -> AsyncIterator[aioredis.Redis]:
    async with raw_client(fault_server.url) as client:
        yield client
    await drop_namespace(fault_server.url, namespace)


async def command_calls(raw: aioredis.Redis, command: str) -> int:
    """How often the server ran `command` since the last CONFIG RESETSTAT."""
    stats = await raw.info("commandstats")
    calls: int = stats.get(f"cmdstat_{command}", {}).get("calls", 0)
    return calls


# -- the pointer/blob invariant ----------------------------------------------------------------


async def assert_pointers_consistent(raw: aioredis.Redis, namespace: str) -> int:
    """Check every pointer and blob of `namespace`; return how many blobs there are.

    No pointer may name a missing blob or one of another slot, and every slot that owns blobs
    has its pointer on one of them. (Every session written by these tests has a user.)
    """
    keys = RedisKeys(namespace)
    # The sealed row's blobs open with its test key ring (any other value is left as stored).
    opener = Sealer(namespace, encryption=sealed_row_encryption(accept_plaintext=True))
    blobs: dict[str, SessionData] = {}
    pointers: dict[str, str] = {}
    async for name in raw.scan_iter(match=f"{namespace}:*", count=1000):
        text, value = name.decode(), await raw.get(name)
        assert isinstance(value, bytes), f"{text} vanished during the scan"
        if text.startswith(keys.session_prefix):
            key = text.removeprefix(keys.session_prefix)
            blobs[key] = decode_session_data(opener.open(value, session_key=key, limit=None))
        elif not text.startswith(keys.meta_prefix):  # a sealing store's pointer records
            pointers[text] = value.decode()
    by_slot: defaultdict[str, set[str]] = defaultdict(set)
    for key, data in blobs.items():
        env, tenant_id, team, user = scope_of(data.tenant_ctx)
        assert user is not None
        by_slot[keys.user(UserSlot(env, tenant_id, team, user))].add(key)
    for pointer, target in pointers.items():
        assert target in blobs, f"pointer {pointer} names the missing session {target}"
        assert target in by_slot[pointer], f"pointer {pointer} names another slot's session"
    for slot, members in by_slot.items():
        assert pointers.get(slot) in members, f"sessions {members} of {slot} lost their pointer"
    return len(blobs)


# -- 1. the server dies during a load loop and comes back on the same port ---------------------


class Outage:
    """The phases of a crash drill and a tally of call outcomes per (phase, worker)."""

    def __init__(self) -> None:
        self.phase = "up-before"
        self.ok: Counter[tuple[str, int]] = Counter()
        self.failed: Counter[tuple[str, int]] = Counter()
        self.crash: BaseException | None = None
        self._changed = asyncio.Condition()

    async def call(self, worker: int, call: Awaitable[T]) -> T:
        """Run one call, checking its outcome against the phase it started and ended in."""
        started = self.phase
        try:
            result = await bounded(call)
        except UnavailableError:
            assert started != "up-after", "a call started after the restart failed"
            await self._count(self.failed, started, worker)
            raise
        assert not (started == self.phase == "down"), "a call succeeded while Redis was down"
        await self._count(self.ok, started, worker)
        return result

    async def _count(self, tally: Counter[tuple[str, int]], phase: str, worker: int) -> None:
        tally[phase, worker] += 1
        async with self._changed:
            self._changed.notify_all()

    async def crashed(self, error: BaseException) -> None:
        self.crash = error
        async with self._changed:
            self._changed.notify_all()

    async def until(
        self, tally: Counter[tuple[str, int]], phase: str, workers: int, n: int
    ) -> None:
        """Wait until every worker has `n` outcomes of `tally` in calls started in `phase`."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.crash is not None
                    or all(tally[phase, worker] >= n for worker in range(workers))
                )
            )
        if self.crash is not None:
            raise self.crash


async def session_cycle(store: RedisSessionStore, outage: Outage, worker: int, user: str) -> None:
    """One user's life: create twice (the pointer moves), read, find, update, remove both."""
    ctx, first, second = ctx_of(user), marked(user, f"{user}/1"), marked(user, f"{user}/2")
    assert await outage.call(worker, store.find_by_user(ctx, user)) is None
    a = await outage.call(worker, store.create_session(ctx, first))
    assert await outage.call(worker, store.get_session(a)) == first
    b = await outage.call(worker, store.create_session(ctx, second))
    assert await outage.call(worker, store.find_by_user(ctx, user)) == (b, second)
    moved = msgspec.structs.replace(second, context_json='{"marker":"moved"}')
    await outage.call(worker, store.update_session(b, moved))
    await outage.call(worker, store.remove_session(a))
    assert await outage.call(worker, store.find_by_user(ctx, user)) == (b, moved)
    await outage.call(worker, store.remove_session(b))
    assert await outage.call(worker, store.get_session(b)) is None


async def churn(store: RedisSessionStore, outage: Outage, worker: int, stop: asyncio.Event) -> None:
    """Run session cycles for fresh users until `stop`; a failed cycle is abandoned."""
    cycle = 0
    while not stop.is_set():
        cycle += 1
        assert cycle < 100_000, "the load loop did not stop"
        try:
            await session_cycle(store, outage, worker, f"w{worker}-c{cycle}")
        except UnavailableError:
            continue
        except BaseException as error:  # an assertion, or a hung call: stop the drill
            await outage.crashed(error)
            raise


@pytest.mark.slow
async def test_server_killed_mid_load_then_restarted_same_store_recovers(
    transport: Backend, namespace: str
) -> None:
    """A crash mid-load fails calls fast with UnavailableError, the same store recovers by
    itself after a restart on the same port, and no pointer or blob is left dangling."""
    workers = 4
    # Persist every write before it is acknowledged, so state from before the crash survives it.
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        outage, stop = Outage(), asyncio.Event()
        async with open_store(
            server.url,
            namespace,
            transport,
            max_connections=8,
            connect_timeout=1,
            socket_timeout=1,
        ) as store:
            tasks = [asyncio.create_task(churn(store, outage, w, stop)) for w in range(workers)]
            try:
                async with asyncio.timeout(WAIT_BOUND):
                    await outage.until(outage.ok, "up-before", workers, 20)
                    await asyncio.to_thread(server.stop)  # SIGKILL, with calls in flight
                    outage.phase = "down"
                    await outage.until(outage.failed, "down", workers, 3)
                    outage.phase = "restarting"
                    await asyncio.to_thread(server.start)
                    outage.phase = "up-after"
                    await outage.until(outage.ok, "up-after", workers, 20)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
        async with raw_client(server.url) as raw:
            await assert_pointers_consistent(raw, namespace)


# -- 2. a thousand cancellations through a slow network ----------------------------------------


class CancelDrill:
    """Random store calls cancelled at random points, and the truth to check replies against."""

    def __init__(self, store: RedisSessionStore, owners: dict[SessionKey, str]) -> None:
        self.store = store
        self.owners = owners  # base sessions: key -> user (its marker is the key itself)
        self.users = {user: key for key, user in owners.items()}
        self.created: dict[SessionKey, str] = {}  # scratch sessions whose create completed
        self.removable: list[SessionKey] = []
        self.removed: set[SessionKey] = set()
        self.outcomes: Counter[str] = Counter()
        self.rng = random.Random(1234)

    def check_base(self, key: SessionKey, data: SessionData | None) -> None:
        assert data is not None, f"base session {key} vanished"
        assert marker_of(data) == key, f"get({key}) returned another session's data"
        assert data.tenant_ctx == ctx_of(self.owners[key])

    async def get_base(self) -> None:
        key = self.rng.choice(list(self.owners))
        self.check_base(key, await self.store.get_session(key))

    async def find_base(self) -> None:
        user = self.rng.choice(list(self.users))
        found = await self.store.find_by_user(ctx_of(user), user)
        assert found is not None, f"find_by_user({user}) lost its session"
        assert found[0] == self.users[user], f"find_by_user({user}) returned another key"
        self.check_base(*found)

    async def update_base(self) -> None:
        key = self.rng.choice(list(self.owners))
        node = f"node.{self.rng.randrange(1000)}"
        await self.store.update_session(key, marked(self.owners[key], key, node=node))

    async def create_scratch(self) -> None:
        marker = f"scratch-{self.rng.randrange(10**9)}"
        key = await self.store.create_session(ctx_of(marker), marked(marker, marker))
        self.created[key] = marker

    async def remove_scratch(self) -> None:
        if self.removable:
            key = self.removable.pop()
            await self.store.remove_session(key)
            self.removed.add(key)

    async def update_with_base(self) -> None:
        key = self.rng.choice(list(self.owners))
        node = f"node.{self.rng.randrange(1000)}"

        def change(data: SessionData) -> SessionData:
            self.check_base(key, data)
            return marked(self.owners[key], key, node=node)

        entry = await self.store.update_with(key, change)
        self.check_base(key, entry.data)

    async def compare_and_set_base(self) -> None:
        key = self.rng.choice(list(self.owners))
        entry = await self.store.get_entry(key)
        assert entry is not None
        self.check_base(key, entry.data)
        node = f"node.{self.rng.randrange(1000)}"
        with contextlib.suppress(ConflictError):  # another call's write landed in between
            data = marked(self.owners[key], key, node=node)
            await self.store.update_session(key, data, expected_revision=entry.revision)

    async def find_or_create_base(self) -> None:
        user = self.rng.choice(list(self.users))

        def never() -> SessionData:
            raise AssertionError(f"find_or_create({user}) lost its session")

        entry, created = await self.store.find_or_create(ctx_of(user), user, never)
        assert not created
        assert entry.key == self.users[user], f"find_or_create({user}) returned another key"
        self.check_base(entry.key, entry.data)

    async def touch_base(self) -> None:
        await self.store.touch_session(self.rng.choice(list(self.owners)))

    def random_call(self) -> Callable[[], Awaitable[None]]:
        calls = [self.get_base, self.find_base, self.update_base, self.update_with_base]
        calls += [self.compare_and_set_base, self.find_or_create_base, self.touch_base]
        return self.rng.choice([*calls, self.create_scratch, self.remove_scratch])

    async def cancelled(self, call: Callable[[], Awaitable[None]], after: float) -> None:
        """Run `call`, cancelling it once `after` seconds have passed."""
        try:
            async with asyncio.timeout(after) as deadline:
                await call()
        except TimeoutError:
            assert deadline.expired(), "a store call raised TimeoutError by itself"
            self.outcomes["cancelled"] += 1
        else:
            self.outcomes["completed"] += 1

    async def verify(self) -> None:
        """Uncancelled reads: every reply must belong to its own request."""
        await bounded(self.get_base())
        await bounded(self.find_base())

    async def verify_all(self) -> None:
        for key in self.owners:
            self.check_base(key, await bounded(self.store.get_session(key)))
        for key, marker in self.created.items():
            data = await bounded(self.store.get_session(key))
            assert data is not None, f"created session {key} vanished"
            assert marker_of(data) == marker, f"get({key}) returned another session's data"
        for key in self.removed:
            assert await bounded(self.store.get_session(key)) is None


@pytest.mark.slow
async def test_a_thousand_random_cancellations_leave_no_crosstalk_or_leaks(
    transport: Backend, fault_server: RedisServer, fault_raw: aioredis.Redis, namespace: str
) -> None:
    """Cancelling 1,000 calls (lifecycle calls included) at random points never hands a reply
    to the wrong request and leaves no connection or permit behind."""
    max_connections = 8
    async with (
        FaultProxy(fault_server.port, max_delay=0.002, seed=7) as proxy,
        open_store(proxy.url, namespace, transport, max_connections=max_connections) as store,
    ):
        owners: dict[SessionKey, str] = {}
        for n in range(16):
            user = f"base-{n}"
            key = await store.create_session(ctx_of(user), marked(user, "pending"))
            await store.update_session(key, marked(user, key))  # the marker is the key itself
            owners[key] = user
        drill = CancelDrill(store, owners)
        doomed = [f"doomed-{n}" for n in range(200)]
        creates = (store.create_session(ctx_of(user), marked(user, user)) for user in doomed)
        drill.removable = list(await bounded(asyncio.gather(*creates)))

        # Cancel points spread over a typical wave's duration, measured here: a fixed window
        # would cancel nearly every call on a loaded machine and almost none on an idle one.
        started = time.perf_counter()
        for _ in range(4):
            calls = [drill.random_call() for _ in range(max_connections)]
            await bounded(asyncio.gather(*(call() for call in calls)))
        window = 2 * (time.perf_counter() - started) / 4
        for _ in range(125):  # 125 waves of 8 cancelled calls, each followed by checked reads
            wave = [
                drill.cancelled(drill.random_call(), drill.rng.uniform(0, window))
                for _ in range(max_connections)
            ]
            await bounded(asyncio.gather(*wave))
            await drill.verify()
        await drill.verify_all()

        assert drill.outcomes.total() == 1000
        assert drill.outcomes["cancelled"] >= 50, drill.outcomes
        assert drill.outcomes["completed"] >= 50, drill.outcomes
        in_use, total = pool_counts(store)
        assert in_use == 0, "a cancelled call leaked a pooled connection"
        assert total <= max_connections
        assert store.pool_stats().in_use == 0, "a cancelled call kept a gate permit"
        if transport.batching:  # cancelled calls share connections: none may be dropped or stuck
            assert total == 0, "a batched store used redis-py's pool"
            await assert_nothing_left_in_flight(store)
        assert await bounded(store.get_session(next(iter(owners)))) is not None


# -- 3. ten times more concurrent calls than connections ---------------------------------------


async def create_and_read_back(store: RedisSessionStore, user: str) -> None:
    data = marked(user, user)
    key = await store.create_session(ctx_of(user), data)
    assert await store.get_session(key) == data


async def test_ten_times_more_calls_than_connections_all_complete(
    transport: Backend, fault_server: RedisServer, fault_raw: aioredis.Redis, namespace: str
) -> None:
    """40 concurrent callers all complete correctly when the wait is generous, on exactly 4
    pooled connections unbatched, on at most the transport's 2 shared ones batched."""
    async with (
        FaultProxy(fault_server.port, max_delay=0.002, seed=3) as proxy,
        open_store(proxy.url, namespace, transport, max_connections=4, pool_timeout=10) as store,
    ):
        users = [f"crowd-{n}" for n in range(40)]
        await bounded(asyncio.gather(*(create_and_read_back(store, user) for user in users)))
        if transport.batching:
            assert pool_counts(store) == (0, 0), "a batched store used redis-py's pool"
            await assert_nothing_left_in_flight(store)
        else:
            assert pool_counts(store) == (0, 4), "the crowd should have used exactly 4 connections"
    assert await assert_pointers_consistent(fault_raw, namespace) == 40


async def test_saturated_pool_raises_pool_exhausted_not_server_down(
    transport: Backend, fault_server: RedisServer, fault_raw: aioredis.Redis, namespace: str
) -> None:
    """With every connection stuck on a slow server, waiting callers get PoolExhaustedError
    (code rate_limited) after pool_timeout, and the stuck calls still complete afterwards.
    Unbatched, 4 calls fill the pool's 4 connections; batched, the transport's in-flight bound
    (max_in_flight unanswered requests on each of its shared connections) does."""
    held = DEFAULT_CONNECTIONS * DEFAULT_MAX_IN_FLIGHT if transport.batching else 4
    async with (
        FaultProxy(fault_server.port) as proxy,
        open_store(
            proxy.url, namespace, transport, max_connections=4, pool_timeout=0.2, socket_timeout=10
        ) as store,
    ):
        key = await store.create_session(ALICE, marked("alice", "slow"))
        proxy.hold_replies()
        loop = asyncio.get_running_loop()
        started = loop.time()
        calls = [asyncio.create_task(store.get_session(key)) for _ in range(held + 36)]
        async with asyncio.timeout(CALL_BOUND):
            for finished in itertools.islice(asyncio.as_completed(calls), 36):
                with pytest.raises(PoolExhaustedError) as raised:
                    await finished
                assert raised.value.code is ErrorCode.RATE_LIMITED
                assert not isinstance(raised.value, UnknownOutcomeError)
        assert 0.19 <= loop.time() - started < 0.2 + 1.5
        stuck = [call for call in calls if not call.done()]
        assert len(stuck) == held, f"only the {held} calls holding connections should still wait"
        proxy.release_replies()
        for data in await bounded(asyncio.gather(*stuck)):
            assert data is not None
            assert marker_of(data) == "slow"


async def test_a_silent_server_times_out_after_socket_timeout(
    transport: Backend, fault_server: RedisServer, namespace: str
) -> None:
    """A server that stops replying fails reads with code timeout and writes with an unknown
    outcome after socket_timeout, and the store works again once replies flow."""
    async with (
        FaultProxy(fault_server.port) as proxy,
        open_store(proxy.url, namespace, transport, max_connections=2, socket_timeout=0.3) as store,
    ):
        key = await store.create_session(ALICE, marked("alice", "before"))
        proxy.hold_replies()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UnavailableError) as read:
            await bounded(store.get_session(key))
        # uvloop's clock counts whole milliseconds: 0.3 s can read as 0.29999...
        assert 0.3 - 0.001 <= loop.time() - started < 0.3 + 1.5
        assert read.value.code is ErrorCode.TIMEOUT
        assert not isinstance(read.value, UnknownOutcomeError)
        with pytest.raises(UnknownOutcomeError) as write:
            await bounded(store.update_session(key, marked("alice", "after")))
        assert write.value.code is ErrorCode.TIMEOUT
        proxy.release_replies()
        data = await bounded(store.get_session(key))
        assert data is not None
        assert marker_of(data) in {"before", "after"}  # unknown, as the error said
        await bounded(store.update_session(key, marked("alice", "again")))
        assert await bounded(store.find_by_user(ALICE, "alice")) == (key, marked("alice", "again"))


async def test_server_down_is_unavailable_not_pool_exhausted(
    transport: Backend, namespace: str
) -> None:
    """A server that refuses connections gives UnavailableError (code unavailable), quickly."""
    async with open_store(f"redis://127.0.0.1:{free_port()}/0", namespace, transport) as store:
        with pytest.raises(UnavailableError) as raised:
            await bounded(store.get_session("any"))
    assert not isinstance(raised.value, PoolExhaustedError)
    assert raised.value.code is ErrorCode.UNAVAILABLE


# -- 4. corrupt blobs and wrong-type keys ------------------------------------------------------


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, transport: Backend) -> str:
    """The run's private server of the engine `transport` runs on."""
    return server_url(request, transport.server or "redis")


# The owner fields the update script checks are right; the rest is not SessionData.
OWNER = {"env": "dev", "tenant_id": "tenant-42", "team_id": "support", "user_id": "victim"}
BAD_BLOBS: dict[str, bytes | None] = {  # None: the blob key holds a list instead of a string
    "not-json": b'{"tenant_ctx": {',
    "json-array": b"[1, 2, 3]",
    "json-string": b'"a string"',
    "json-object-not-session": b'{"hello": "world"}',
    "owner-matches-rest-invalid": json.dumps({"tenant_ctx": OWNER, "flow_id": 7}).encode(),
    "list-not-string": None,
}


async def plant(raw: aioredis.Redis, name: str, blob: bytes | None) -> None:
    if blob is None:
        await raw.delete(name)
        await raw.lpush(name, b"x")
    else:
        await raw.set(name, blob)


@pytest.fixture
async def redis_raw(redis_url: str, namespace: str) -> AsyncIterator[aioredis.Redis]:
    async with raw_client(redis_url) as client:
        yield client
    await drop_namespace(redis_url, namespace)


async def assert_store_works(store: RedisSessionStore, user: str) -> None:
    """A full create/get/find/update/remove flow for `user` succeeds."""
    ctx, data = ctx_of(user), marked(user, user)
    key = await store.create_session(ctx, data)
    assert await store.get_session(key) == data
    assert await store.find_by_user(ctx, user) == (key, data)
    moved = marked(user, user, node="node.next")
    await store.update_session(key, moved)
    assert await store.get_session(key) == moved
    await store.remove_session(key)
    assert await store.find_by_user(ctx, user) is None


@pytest.mark.parametrize("corrupt", list(BAD_BLOBS))
async def test_corrupt_blob_raises_internal_error_naming_the_key(
    corrupt: str, transport: Backend, redis_url: str, redis_raw: aioredis.Redis, namespace: str
) -> None:
    """A blob that is not SessionData makes get, update and find raise InternalError naming the
    session key, while other sessions keep working."""
    async with open_store(redis_url, namespace, transport) as store:
        key = await store.create_session(ctx_of("victim"), marked("victim", "victim"))
        await plant(redis_raw, store.keys.session(key), BAD_BLOBS[corrupt])
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get_session(key),
            "update": lambda: store.update_session(key, marked("victim", "again")),
            "find": lambda: store.find_by_user(ctx_of("victim"), "victim"),
        }
        for name, call in calls.items():
            with pytest.raises(InternalError) as raised:
                await bounded(call())
            assert key in str(raised.value), f"{name}: {raised.value}"
            assert raised.value.code is ErrorCode.INTERNAL
        await assert_store_works(store, "bystander")


async def test_wrong_type_user_pointer_raises_internal_error(
    transport: Backend, redis_url: str, redis_raw: aioredis.Redis, namespace: str
) -> None:
    """A user pointer holding a list makes find_by_user raise InternalError without naming the
    user, other users keep working, and a new create repairs the pointer."""
    async with open_store(redis_url, namespace, transport) as store:
        pointer = store.keys.user(UserSlot("dev", "tenant-42", "support", "victim"))
        await redis_raw.lpush(pointer, b"x")
        with pytest.raises(InternalError, match="pointer") as raised:
            await bounded(store.find_by_user(ctx_of("victim"), "victim"))
        assert "victim" not in str(raised.value)
        await assert_store_works(store, "bystander")
        await assert_store_works(store, "victim")


# -- 7. update racing remove -------------------------------------------------------------------


async def keep_updating(store: RedisSessionStore, key: SessionKey, user: str) -> list[str]:
    """Update `key` 4 times in a row; return each outcome, "landed" or "not-found"."""
    outcomes = []
    for n in range(4):
        try:
            await store.update_session(key, marked(user, f"v{n}"))
        except NotFoundError:
            outcomes.append("not-found")
        else:
            outcomes.append("landed")
    return outcomes


async def test_updates_racing_a_remove_never_resurrect_the_session(
    transport: Backend, fault_server: RedisServer, fault_raw: aioredis.Redis, namespace: str
) -> None:
    """When updaters race a remove, the remove wins for good: once an update raised
    NotFoundError no later one lands, and afterwards neither blob nor pointer exists."""
    rng = random.Random(99)
    tally: Counter[str] = Counter()
    async with (
        FaultProxy(fault_server.port, max_delay=0.001, seed=5) as proxy,
        open_store(proxy.url, namespace, transport, max_connections=16) as store,
    ):
        for round_ in range(40):
            user = f"racer-{round_ % 3}"
            key = await store.create_session(ctx_of(user), marked(user, "v0"))
            racers: list[Awaitable[list[str] | None]] = [
                keep_updating(store, key, user) for _ in range(3)
            ]
            racers.insert(rng.randrange(4), store.remove_session(key))
            for outcome in await bounded(asyncio.gather(*racers)):
                if outcome is None:
                    continue  # the remove succeeded
                if "not-found" in outcome:
                    after = outcome[outcome.index("not-found") :]
                    assert "landed" not in after, f"an update landed after the remove: {outcome}"
                tally.update(outcome)
            assert await store.get_session(key) is None
            assert await fault_raw.exists(store.keys.session(key)) == 0
            assert await store.find_by_user(ctx_of(user), user) is None
    assert await assert_pointers_consistent(fault_raw, namespace) == 0
    assert tally["landed"] > 0, tally
    assert tally["not-found"] > 0, tally


# -- 8. lost replies ---------------------------------------------------------------------------


@asynccontextmanager
async def lossy_store(
    fault_server: RedisServer, namespace: str, transport: Backend
) -> AsyncIterator[tuple[FaultProxy, RedisSessionStore]]:
    """A one-connection store behind a proxy, warmed up (connected, scripts loaded); batched,
    the lone sequential caller keeps to one shared connection."""
    async with (
        FaultProxy(fault_server.port) as proxy,
        open_store(proxy.url, namespace, transport, max_connections=1) as store,
    ):
        await assert_store_works(store, "warm-up")
        yield proxy, store


Call = Callable[[RedisSessionStore, SessionKey], Awaitable[object]]
AFTER = marked("alice", "after")


class LostWrite(NamedTuple):
    command: str  # the server command whose reply is lost
    skip: int  # requests the call sends before that command
    call: Call
    found_after: str | None  # the marker find_by_user sees once the write applied


WRITES = {
    "create": LostWrite("exec", 0, lambda store, key: store.create_session(ALICE, AFTER), "after"),
    "update": LostWrite("evalsha", 0, lambda store, key: store.update_session(key, AFTER), "after"),
    "remove": LostWrite("evalsha", 0, lambda store, key: store.remove_session(key), None),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_write_whose_reply_is_lost_raises_unknown_outcome(
    write: str,
    transport: Backend,
    fault_server: RedisServer,
    fault_raw: aioredis.Redis,
    namespace: str,
) -> None:
    """A write whose reply is lost raises UnknownOutcomeError, is not re-sent, and did apply."""
    lost = WRITES[write]
    async with lossy_store(fault_server, namespace, transport) as (proxy, store):
        key = await store.create_session(ALICE, marked("alice", "before"))
        await fault_raw.config_resetstat()
        proxy.lose_replies(1, skip=lost.skip)
        with pytest.raises(UnknownOutcomeError) as raised:
            await bounded(lost.call(store, key))
        assert isinstance(raised.value, UnavailableError)
        assert raised.value.code is ErrorCode.UNAVAILABLE
        assert await command_calls(fault_raw, lost.command) == 1, "the write was re-sent"
        found = await bounded(store.find_by_user(ALICE, "alice"))
        assert (marker_of(found[1]) if found else None) == lost.found_after, "it did not apply"


READS: dict[str, tuple[str, Call]] = {
    "get": ("get", lambda store, key: store.get_session(key)),
    "find": ("evalsha", lambda store, key: store.find_by_user(ctx_of("alice"), "alice")),
}


@pytest.mark.parametrize("read", list(READS))
async def test_read_whose_reply_is_lost_is_retried(
    read: str,
    transport: Backend,
    fault_server: RedisServer,
    fault_raw: aioredis.Redis,
    namespace: str,
) -> None:
    """A read whose reply is lost is sent again and succeeds; when every reply is lost it raises
    plain UnavailableError after a bounded number of tries, and the store then recovers."""
    command, call = READS[read]
    async with lossy_store(fault_server, namespace, transport) as (proxy, store):
        key = await store.create_session(ctx_of("alice"), marked("alice", "kept"))

        await fault_raw.config_resetstat()
        proxy.lose_replies(1)
        result = await bounded(call(store, key))
        assert await command_calls(fault_raw, command) == 2, "the read was not retried"
        assert result in (marked("alice", "kept"), (key, marked("alice", "kept")))

        await fault_raw.config_resetstat()
        proxy.lose_replies(1000)
        with pytest.raises(UnavailableError) as raised:
            await bounded(call(store, key))
        assert not isinstance(raised.value, UnknownOutcomeError)
        assert raised.value.code is ErrorCode.UNAVAILABLE
        assert 1 <= await command_calls(fault_raw, command) <= 3

        proxy.lose_replies(0)
        assert await bounded(call(store, key)) == result
