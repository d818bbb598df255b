"""What only Redis shows about deadlines (greentic_session/backends/redis/due.py): claimers on
separate connections and in separate processes, a claimer that dies, a restart with AOF, many
deadlines not yet due, Rust's clear_wait, hostile records, cancellation, the keyspace without
`due_in`, round trips, and the cluster's sharded index.

Real time passes here only where the server's clock must be shown to decide (a lease running
out, a deadline after a restart): those waits are bounded polls, never sleeps standing in for
synchronization.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import MovedError

from greentic_session import (
    ConflictError,
    InternalError,
    RedisSessionStore,
    ReplyScope,
    SessionError,
    SessionKey,
    TenantCtx,
    UnknownOutcomeError,
    encode_session_data,
)
from greentic_session.backends.redis.due import SHARD_TAGS, SHARDS, shard_of
from greentic_session.deadlines import DueWait
from greentic_session.fence import UserSlot
from greentic_session.testing import BACKENDS, Backend, LocalCluster, RedisServer
from tests.conftest import backend_urls, drop_namespace, make_data
from tests.test_due_waits import shift_deadlines
from tests.test_redis_layout import counting_round_trips

USER = TenantCtx.new("dev", "tenant-a").with_user("user-77")
CHAT = ReplyScope(conversation="telegram:chat-a")
ROWS = {row.id: row for row in BACKENDS}
# The single-node engines and the cluster (batched: the default transport).
ROW_PARAMS = [pytest.param(ROWS[name], id=name) for name in ("redis", "valkey", "cluster")]
SINGLE_PARAMS = [pytest.param(ROWS[name], id=name) for name in ("redis", "valkey")]


def ctx_of(user: str) -> TenantCtx:
    return TenantCtx.new("dev", "tenant-a").with_user(user)


class Bench:
    """Stores of one row in the test's namespace, plus raw clients of the server(s) under it."""

    def __init__(self, row: Backend, url: str, raw_url: str, namespace: str) -> None:
        self.row, self.url, self.raw_url, self.namespace = row, url, raw_url, namespace
        self.opened: list[RedisSessionStore] = []

    def open(self) -> RedisSessionStore:
        store = self.row.open(redis_url=self.url, namespace=self.namespace)
        assert isinstance(store, RedisSessionStore)
        self.opened.append(store)
        return store

    @property
    def cluster(self) -> bool:
        return self.row.topology == "cluster"

    async def raw_call(self, key: str, *command: Any) -> Any:
        """One command on the node holding `key` (the cluster: each master until one owns it)."""
        for node_url in self.raw_url.split(","):
            client = aioredis.Redis.from_url(node_url)
            try:
                return await client.execute_command(*command)
            except MovedError:
                continue
            finally:
                await client.aclose()
        raise AssertionError("no node owns the key")

    async def names(self) -> set[str]:
        """Every key under the namespace, on every node."""
        found: set[str] = set()
        for node_url in self.raw_url.split(","):
            client = aioredis.Redis.from_url(node_url)
            try:
                found |= {
                    name.decode() async for name in client.scan_iter(match=f"{self.namespace}:*")
                }
            finally:
                await client.aclose()
        return found

    async def indexed(self) -> int:
        """Members of the deadline index, all shards together."""
        total = 0
        for name in await self.names():
            if name.startswith(f"{self.namespace}:dueidx"):
                total += await self.raw_call(name, "ZCARD", name)
        return total


async def open_bench(
    request: pytest.FixtureRequest, row: Backend, namespace: str
) -> AsyncIterator[Bench]:
    url, raw_url = backend_urls(request, row)
    assert url is not None
    assert raw_url is not None
    opened = Bench(row, url, raw_url, namespace)
    yield opened
    for store in opened.opened:
        await store.aclose()
    await drop_namespace(raw_url, namespace)


@pytest.fixture(params=ROW_PARAMS)
async def bench(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bench]:
    """Stores on a single Redis, a single Valkey, and the Redis Cluster."""
    async for opened in open_bench(request, request.param, namespace):
        yield opened


@pytest.fixture(params=SINGLE_PARAMS)
async def single(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bench]:
    """Stores on a single Redis and a single Valkey."""
    async for opened in open_bench(request, request.param, namespace):
        yield opened


@pytest.fixture
async def cluster_bench(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bench]:
    """Stores on the Redis Cluster."""
    async for opened in open_bench(request, ROWS["cluster"], namespace):
        yield opened


async def register_many(
    store: RedisSessionStore, users: list[str], due_in: float, *, chunk: int = 200
) -> list[SessionKey]:
    """One wait per user (scope CHAT), each due `due_in` from now; their keys."""
    keys = [store.session_key_for(ctx_of(user), user, f"wait-{user}") for user in users]

    async def one(user: str, key: SessionKey) -> None:
        ctx = ctx_of(user)
        await store.register_wait(ctx, user, CHAT, key, make_data(ctx), due_in=due_in)

    for at in range(0, len(users), chunk):
        await asyncio.gather(
            *(
                one(user, key)
                for user, key in zip(users[at : at + chunk], keys[at : at + chunk], strict=True)
            )
        )
    return keys


async def poll_until(
    check: Callable[[], Awaitable[bool]], *, within: float = 20.0, pause: float = 0.02
) -> None:
    """Await `check` until it holds, pausing between tries; fail after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(pause)


async def claim_until(store: RedisSessionStore, want: int, *, lease: float = 30.0) -> list[DueWait]:
    """Claim until `want` waits came (the server's clock must first pass their deadlines)."""
    got: list[DueWait] = []

    async def more() -> bool:
        got.extend(await store.claim_due_waits(limit=100, lease=lease))
        return len(got) >= want

    await poll_until(more)
    return got


# -- many claimers -------------------------------------------------------------------------------


async def test_three_stores_claim_600_due_waits_each_exactly_once(bench: Bench) -> None:
    """Three stores on their own connections claim 600 due waits at once, settling each at once:
    every wait is delivered exactly once, on attempt 1, and every settle succeeds."""
    setup = bench.open()
    keys = await register_many(setup, [f"u{i}" for i in range(600)], due_in=0.001)
    delivered: list[tuple[SessionKey, int, bool]] = []

    async def claimer(store: RedisSessionStore) -> None:
        while len(delivered) < len(keys):
            batch = await store.claim_due_waits(limit=50, lease=30)
            settled = await asyncio.gather(*(store.settle_due(due) for due in batch))
            delivered.extend(
                (due.key, due.attempt, ok) for due, ok in zip(batch, settled, strict=True)
            )
            if not batch:
                await asyncio.sleep(0.005)  # nothing due yet by the server's clock

    async with asyncio.timeout(60):
        await asyncio.gather(*(claimer(bench.open()) for _ in range(3)))
    assert collections.Counter(key for key, _, _ in delivered) == collections.Counter(keys)
    assert {attempt for _, attempt, _ in delivered} == {1}
    assert all(ok for _, _, ok in delivered)
    assert await bench.indexed() == 0
    assert not any(":due:" in name for name in await bench.names())


CLAIMER = textwrap.dedent(
    """
    import asyncio, sys
    from greentic_session import RedisSessionStore

    async def main(url, namespace):
        async with RedisSessionStore.from_url(url, namespace=namespace) as store:
            print("ready", flush=True)
            sys.stdin.readline()  # the parent's go, once every claimer is ready
            index = store.keys.due_index()
            while True:
                batch = await store.claim_due_waits(limit=25, lease=30)
                for due in batch:
                    settled = await store.settle_due(due)
                    print(f"{due.key} {due.attempt} {settled}", flush=True)
                if not batch:
                    if await store.client.zcard(index) == 0:
                        return
                    await asyncio.sleep(0.005)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def start_claimer(code: str, bench: Bench) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        bench.url,
        bench.namespace,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        assert await proc.stdout.readline() == b"ready\n"
    return proc


async def test_three_processes_claim_600_due_waits_each_exactly_once(single: Bench) -> None:
    """Three claimer processes, started together once all are ready, claim and settle 600 due
    waits: each is delivered exactly once, on attempt 1, and every settle succeeds."""
    keys = await register_many(single.open(), [f"u{i}" for i in range(600)], due_in=0.001)
    procs = [await start_claimer(CLAIMER, single) for _ in range(3)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = []
    async with asyncio.timeout(120):
        for proc in procs:
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            outputs.append(out.decode().split("\n"))
    lines = [line.split() for output in outputs for line in output if line]
    assert collections.Counter(key for key, _, _ in lines) == collections.Counter(keys)
    assert {(attempt, settled) for _, attempt, settled in lines} == {("1", "True")}


DYING_CLAIMER = textwrap.dedent(
    """
    import asyncio, sys
    from greentic_session import RedisSessionStore

    async def main(url, namespace):
        urls = url.split(",")  # a cluster's masters, or one server
        if len(urls) > 1:
            store = RedisSessionStore.from_cluster(urls, namespace=namespace)
        else:
            store = RedisSessionStore.from_url(url, namespace=namespace)
        async with store:
            print("ready", flush=True)
            claimed = []
            while len(claimed) < 20:
                claimed += await store.claim_due_waits(limit=100, lease=2.0)
            print(" ".join(due.key for due in claimed), flush=True)
            sys.stdin.readline()  # never settles: the parent kills this process here

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_claimer_that_dies_leaves_its_waits_to_come_back_on_attempt_2(
    bench: Bench,
) -> None:
    """A process claims 20 waits (lease 2 s) and is killed without settling: no claim returns
    them while the lease runs, and once it ran out (the server's clock) every one comes back,
    with attempt 2."""
    store = bench.open()
    keys = await register_many(store, [f"u{i}" for i in range(20)], due_in=0.001)
    proc = await start_claimer(DYING_CLAIMER, bench)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        claimed = (await proc.stdout.readline()).decode().split()
    proc.kill()
    await proc.wait()
    assert sorted(claimed) == sorted(keys)
    assert await store.claim_due_waits() == []
    back = await claim_until(store, 20)
    assert sorted(due.key for due in back) == sorted(keys)
    assert {due.attempt for due in back} == {2}


async def test_a_reply_and_a_timeout_race_40_times_on_separate_connections(bench: Bench) -> None:
    """40 rounds on real deadlines: a reply path (find, get_entry, update) and a timeout path
    (claim, update) on separate stores update from the same revision: one wins each round."""
    replies, timeouts = bench.open(), bench.open()
    wins = []
    for round_ in range(40):
        where = ReplyScope(conversation=f"race-{round_}")
        key = replies.session_key_for(USER, "user-77", f"race-{round_}")
        await replies.register_wait(USER, "user-77", where, key, make_data(USER), due_in=0.001)
        [due] = await claim_until(timeouts, 1)
        found = await replies.find_wait_by_scope(USER, "user-77", where)
        assert found == key
        entry = await replies.get_entry(found)
        assert entry is not None
        assert entry.revision == due.entry.revision

        async def update(
            store: RedisSessionStore, key: SessionKey, revision: str, node: str
        ) -> bool:
            try:
                await store.update_session(
                    key, make_data(USER, node=node), expected_revision=revision
                )
            except ConflictError:
                return False
            return True

        won = await asyncio.gather(
            update(replies, key, entry.revision, "node.replied"),
            update(timeouts, key, due.entry.revision, "node.timed-out"),
        )
        wins.append(sum(won))
        await timeouts.settle_due(due)
    assert wins == [1] * 40


# -- durability and scale ------------------------------------------------------------------------


async def test_a_deadline_survives_a_restart_with_aof(namespace: str) -> None:
    """With AOF (fsync always), a deadline registered before a crash and restart is delivered
    after it, and a lease taken before it still holds after it."""
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        async with RedisSessionStore.from_url(server.url, namespace=namespace) as store:
            leased_key = SessionKey("leased")
            await store.register_wait(
                USER, "user-77", CHAT, leased_key, make_data(USER), due_in=0.001
            )
            [leased] = await claim_until(store, 1, lease=3600)
            later = ReplyScope(conversation="telegram:chat-later")
            key = SessionKey("after-restart")
            await store.register_wait(USER, "user-77", later, key, make_data(USER), due_in=0.3)
            server.restart()
            # A read first: the store retries reads over the lost connection, where a write (a
            # claim) on it would be an unknown outcome.
            assert await store.get_session(key) is not None
            [due] = await claim_until(store, 1)
            assert (due.key, due.scope, due.attempt) == (key, later, 1)
            assert await store.settle_due(due) is True
            assert await store.settle_due(leased) is True


async def test_twenty_thousand_far_deadlines_leave_a_claim_the_50_due(bench: Bench) -> None:
    """20,000 deadlines an hour away and 50 due now: claims return exactly the 50."""
    store = bench.open()
    await register_many(store, [f"far{i}" for i in range(20_000)], due_in=3600, chunk=500)
    near = await register_many(store, [f"near{i}" for i in range(50)], due_in=0.001)
    got = await claim_until(store, 50)
    assert sorted(due.key for due in got) == sorted(near)
    assert await store.claim_due_waits(limit=10_000) == []
    assert await bench.indexed() == 20_050


# -- what else may sit in the keyspace -----------------------------------------------------------


async def test_rusts_clear_wait_makes_the_deadline_a_no_op(bench: Bench) -> None:
    """After a Rust runner's clear_wait (DEL blob and scope pointer, SREM), the deadline is
    dropped when due: never delivered, never raised; its record and index member are gone."""
    store = bench.open()
    [key] = await register_many(store, ["user-77"], due_in=0.001)
    keys = store.keys
    suffix = keys.slot_suffix(UserSlot("dev", "tenant-a", None, "user-77"))
    scope_key = f"{keys.wait_scope_prefix}{suffix}:{CHAT.scope_hash()}"
    await bench.raw_call(keys.session(key), "DEL", keys.session(key), scope_key)
    await bench.raw_call(scope_key, "SREM", keys.wait_user_prefix + suffix, key)

    async def dropped() -> bool:
        assert await store.claim_due_waits() == []
        return await bench.indexed() == 0

    await poll_until(dropped)
    assert not any(":due:" in name for name in await bench.names())


async def plant(bench: Bench, member: str, shard_key: str, score: int = 0) -> None:
    await bench.raw_call(shard_key, "ZADD", shard_key, score, member)


def index_of(store: RedisSessionStore, key: str) -> str:
    return store.keys.due_index(SHARD_TAGS[shard_of(key)] if store.is_cluster else "")


async def test_hostile_records_and_members_are_pruned_never_raised(bench: Bench) -> None:
    """Members that are garbage or stale, records with garbage fields, of another type, naming
    a gone, corrupt or foreign session, or holding a garbage scope, are pruned or skipped: the
    claim returns the one sound wait and raises nothing."""
    store = bench.open()
    keys = store.keys
    users = [f"h{i}" for i in range(7)]
    sound, *bad = await register_many(store, users, due_in=0.001)
    garbage_fields, wrong_type, gone, corrupt, foreign, garbage_scope = bad
    await bench.raw_call(keys.due(garbage_fields), "HSET", keys.due(garbage_fields), "due", "x")
    await bench.raw_call(keys.due(wrong_type), "DEL", keys.due(wrong_type))
    await bench.raw_call(keys.due(wrong_type), "SET", keys.due(wrong_type), "not a hash")
    await bench.raw_call(keys.session(gone), "DEL", keys.session(gone))
    await bench.raw_call(keys.session(corrupt), "SET", keys.session(corrupt), b"\xff{not json")
    stranger = ctx_of("stranger")
    await bench.raw_call(
        keys.session(foreign),
        "SET",
        keys.session(foreign),
        encode_session_data(make_data(stranger)),
    )
    await bench.raw_call(
        keys.due(garbage_scope), "HSET", keys.due(garbage_scope), "json", '{"conversation":7}'
    )
    shard = index_of(store, sound)
    for member in ("no-colon", "zz:not-hex", f"0123456789abcdef:{sound}", ":"):
        await plant(bench, member, shard)
    claimed = await claim_until(store, 1)
    assert [due.key for due in claimed] == [sound]

    async def pruned() -> bool:
        assert await store.claim_due_waits() == []
        return await bench.indexed() == 1  # the sound wait's member, leased

    await poll_until(pruned)
    names = await bench.names()
    assert keys.due(wrong_type) in names  # not ours to delete
    for key in (garbage_fields, gone, corrupt, foreign, garbage_scope):
        assert keys.due(key) not in names
    assert await store.settle_due(claimed[0]) is True


async def test_dead_members_do_not_count_against_the_limit(bench: Bench) -> None:
    """Ten dead deadlines due before three live ones: one claim of 3 prunes the ten on its way
    and returns the three."""
    store = bench.open()
    dead = await register_many(store, [f"dead{i}" for i in range(10)], due_in=60)
    for key in dead:
        await bench.raw_call(store.keys.session(key), "DEL", store.keys.session(key))
    await shift_deadlines(bench.raw_url, bench.namespace, 1)  # the dead ones come due first
    live = await register_many(store, [f"live{i}" for i in range(3)], due_in=60)
    await shift_deadlines(bench.raw_url, bench.namespace, 61)
    claimed = await store.claim_due_waits(limit=3)
    assert sorted(due.key for due in claimed) == sorted(live)
    assert await bench.indexed() == 3


async def test_an_index_of_another_type_is_an_internal_error(single: Bench) -> None:
    """A deadline index key holding another Redis type fails the claim with InternalError."""
    store = single.open()
    index = store.keys.due_index()
    await single.raw_call(index, "SET", index, "not a zset")
    with pytest.raises(InternalError):
        await store.claim_due_waits()


async def test_without_due_in_the_keyspace_and_bytes_are_unchanged(single: Bench) -> None:
    """A wait registered without due_in writes no deadline key; one registered with it and then
    again without leaves exactly the keys and bytes of the first."""
    plain = single.open()
    await register_many(plain, ["user-77"], due_in=3600)
    await plain.register_wait(
        USER, "user-77", CHAT, SessionKey("wait-user-77"), make_data(USER), due_in=None
    )
    names = await single.names()
    assert not any(":due" in name for name in names)
    values = {name: await single.raw_call(name, "DUMP", name) for name in sorted(names)}

    other_ns = single.namespace + "x"
    async with RedisSessionStore.from_url(single.url, namespace=other_ns) as fresh:
        await fresh.register_wait(
            USER, "user-77", CHAT, SessionKey("wait-user-77"), make_data(USER)
        )
        client = aioredis.Redis.from_url(single.url)
        try:
            fresh_names = sorted(
                [n.decode() async for n in client.scan_iter(match=f"{other_ns}:*")]
            )
            fresh_values = {n: await client.dump(n) for n in fresh_names}
        finally:
            await client.aclose()
        await drop_namespace(single.url, other_ns)
    relabel = {name.replace(other_ns, single.namespace, 1): v for name, v in fresh_values.items()}
    assert values == relabel


async def test_deadline_calls_take_one_round_trip_on_a_single_node(single: Bench) -> None:
    """register_wait with due_in, claim_due_waits and settle_due are one round trip each."""
    store = single.open()
    await register_many(store, ["warm"], due_in=0.001)
    await claim_until(store, 1)  # the scripts are loaded
    key = SessionKey("wait-user-77")
    with counting_round_trips() as sent:
        await store.register_wait(USER, "user-77", CHAT, key, make_data(USER), due_in=0.001)
    assert sent[0] == 1
    [due] = await claim_until(store, 1)
    with counting_round_trips() as sent:
        await store.claim_due_waits()
    assert sent[0] == 1
    with counting_round_trips() as sent:
        assert await store.settle_due(due) is True
    assert sent[0] == 1


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelled_claims_and_settles_leave_no_wait_leased_forever(bench: Bench) -> None:
    """Claims cancelled after 0..39 loop turns, and settles of what they returned cancelled
    likewise, leave no wait leased for good: once their short leases ran out every wait is
    claimed again, except those whose settle may have run, and nothing is left indexed."""
    store = bench.open()
    keys = await register_many(store, [f"c{i}" for i in range(30)], due_in=0.001)
    settle_tried: set[str] = set()
    for turns in range(40):
        task = asyncio.ensure_future(store.claim_due_waits(limit=5, lease=0.3))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        [result] = await asyncio.gather(task, return_exceptions=True)
        for due in result if isinstance(result, list) else []:
            settle_tried.add(due.key)
            settle = asyncio.ensure_future(store.settle_due(due))
            for _ in range(turns % 7):
                await asyncio.sleep(0)
            settle.cancel()
            await asyncio.gather(settle, return_exceptions=True)
    seen: list[str] = []

    async def drained() -> bool:
        for due in await store.claim_due_waits(limit=100, lease=30):
            assert await store.settle_due(due) is True
            seen.append(due.key)
        return await bench.indexed() == 0

    await poll_until(drained)
    assert len(seen) == len(set(seen))
    assert set(keys) - set(seen) <= settle_tried
    assert not any(":due:" in name for name in await bench.names())


# -- the cluster's index ---------------------------------------------------------------------------


def test_shard_tags_spread_evenly_over_the_slot_space() -> None:
    """Shard tag i hashes into the i-th sixteenth of the 16,384 slots, and is the first such tag
    of its form, as due.py says."""
    assert len(SHARD_TAGS) == SHARDS
    for i, tag in enumerate(SHARD_TAGS):
        low, high = i * 16384 // SHARDS, (i + 1) * 16384 // SHARDS
        assert low <= key_slot(tag.encode()) < high
        first = next(n for n in range(1000) if low <= key_slot(f"{{d{i}.{n}}}".encode()) < high)
        assert tag == f"{{d{i}.{first}}}"


def shard_masters(cluster: LocalCluster, store: RedisSessionStore) -> dict[int, int]:
    """Each shard's master port."""
    return {
        i: cluster.owner_of_slot(key_slot(store.keys.due_index(tag).encode()))
        for i, tag in enumerate(SHARD_TAGS)
    }


async def test_cluster_deadlines_spread_over_every_master(
    cluster_bench: Bench, redis_cluster: LocalCluster
) -> None:
    """300 deadlines land in index shards on each of the three masters, and claims find all."""
    store = cluster_bench.open()
    keys = await register_many(store, [f"s{i}" for i in range(300)], due_in=0.001)
    masters = shard_masters(redis_cluster, store)
    assert set(masters.values()) == set(redis_cluster.master_ports())
    per_master: collections.Counter[int] = collections.Counter()
    for i, tag in enumerate(SHARD_TAGS):
        name = store.keys.due_index(tag)
        per_master[masters[i]] += await cluster_bench.raw_call(name, "ZCARD", name)
    assert sum(per_master.values()) == 300
    assert all(per_master[port] > 30 for port in redis_cluster.master_ports())
    got = await claim_until(store, 300)
    assert sorted(due.key for due in got) == sorted(keys)


async def test_a_cluster_claim_is_fair_across_shards(cluster_bench: Bench) -> None:
    """With 160 waits due over all 16 shards, a claim of 16 takes one from each shard, and a
    claim of 40 takes two or three from each."""
    store = cluster_bench.open()
    keys = await register_many(store, [f"f{i}" for i in range(160)], due_in=60)
    per_shard = collections.Counter(shard_of(key) for key in keys)
    assert len(per_shard) == SHARDS
    assert min(per_shard.values()) >= 3
    await shift_deadlines(cluster_bench.raw_url, cluster_bench.namespace, 61)
    sixteen = await store.claim_due_waits(limit=16)
    assert sorted(shard_of(due.key) for due in sixteen) == list(range(SHARDS))
    forty = collections.Counter(shard_of(due.key) for due in await store.claim_due_waits(limit=40))
    assert sorted(forty.values()) == [2] * 8 + [3] * 8


async def test_a_cluster_register_whose_index_step_fails_is_an_unknown_outcome(
    cluster_bench: Bench,
) -> None:
    """When the shard refuses the index member (its key holds another type), register_wait
    raises UnknownOutcomeError naming no user; the wait itself is registered."""
    store = cluster_bench.open()
    key = store.session_key_for(USER, "user-77", "w")
    shard = index_of(store, key)
    await cluster_bench.raw_call(shard, "SET", shard, "not a zset")
    with pytest.raises(UnknownOutcomeError) as raised:
        await store.register_wait(USER, "user-77", CHAT, key, make_data(USER), due_in=5)
    assert "user-77" not in str(raised.value)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT) == key


async def test_moving_deadlines_back_makes_them_due(single: Bench) -> None:
    """The time-travel helper the contract suite uses moves index scores and record times by
    the same amount: a deadline an hour away is due after moving an hour."""
    store = single.open()
    [key] = await register_many(store, ["user-77"], due_in=3600)
    assert await store.claim_due_waits() == []
    await shift_deadlines(single.raw_url, single.namespace, 3600)
    [due] = await store.claim_due_waits()
    assert due.key == key


async def test_deadlines_under_a_slot_migration(namespace: str) -> None:
    """While 1,000 slots move (every waiting user's and every index shard's on the source
    among them), three stores claim and settle 240 deadlines, half coming due over the move and
    half (registered again) after it: every wait is delivered exactly once, on attempt 1, and
    claims raise nothing untyped."""
    from tests.test_redis_cluster import slots_of

    with LocalCluster(masters=2) as cluster:
        urls = cluster.startup_urls
        stores = [RedisSessionStore.from_cluster(urls, namespace=namespace) for _ in range(3)]
        try:
            users = [f"mover-{n}" for n in range(240)]
            keys = [stores[0].session_key_for(ctx_of(u), u, f"wait-{u}") for u in users]
            for n, (user, key) in enumerate(zip(users, keys, strict=True)):
                ctx = ctx_of(user)
                # The first half comes due while the slots move; the second is registered again
                # with a near deadline once they moved, whatever the move took on a busy machine.
                due_in = 0.001 + 3.0 * n / len(users) if n < len(users) // 2 else 600.0
                await stores[0].register_wait(ctx, user, CHAT, key, make_data(ctx), due_in=due_in)
            layout = stores[0].keys
            ours = {key_slot(layout.due(key).encode()) for key in keys}
            ours |= {key_slot(layout.due_index(tag).encode()) for tag in SHARD_TAGS}
            src, dst = cluster.master_ports()
            owned = slots_of(cluster, src)
            moving = [slot for slot in owned if slot in ours]
            assert len(moving) >= 5
            slots = moving + [slot for slot in owned if slot not in ours][: 1000 - len(moving)]
            delivered: list[tuple[str, int]] = []
            errors: list[BaseException] = []

            async def claimer(store: RedisSessionStore) -> None:
                while len(delivered) < len(keys):
                    try:
                        batch = await store.claim_due_waits(limit=20, lease=120)
                        for due in batch:
                            delivered.append((due.key, due.attempt))
                            await store.settle_due(due)
                    except Exception as exc:  # recorded: asserted on below
                        errors.append(exc)
                        batch = []
                    if not batch:
                        await asyncio.sleep(0.01)

            async with asyncio.timeout(120):
                tasks = [asyncio.create_task(claimer(store)) for store in stores]
                await asyncio.to_thread(cluster.migrate_slots, slots, src, dst)
                during = len(delivered)
                for user, key in list(zip(users, keys, strict=True))[len(users) // 2 :]:
                    ctx = ctx_of(user)
                    await stores[0].register_wait(
                        ctx, user, CHAT, key, make_data(ctx), due_in=0.001
                    )
                await asyncio.gather(*tasks)
            assert 0 < during <= len(keys) // 2, "no deadline came due while the slots moved"
            assert collections.Counter(key for key, _ in delivered) == collections.Counter(keys)
            assert {attempt for _, attempt in delivered} == {1}
            assert all(isinstance(exc, SessionError) for exc in errors), errors
            assert set(slots) <= set(slots_of(cluster, dst))
        finally:
            for store in stores:
                await store.aclose()
