"""Redis Cluster: the key layout spreads sessions over every master, half-moved slots never fail a
read, and slot migrations, manual failovers and killed masters under load raise only typed errors,
never apply a write twice and never lose an acknowledged one. Real clusters on loopback
ports (`greentic_session.testing.LocalCluster`); the conformance suite runs on the `cluster` row of
the backend table."""

from __future__ import annotations

import asyncio
import json
import string
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as sync_redis

from greentic_session import (
    ConflictError,
    InvalidInputError,
    SessionBackendConfig,
    SessionData,
    SessionError,
    SessionStore,
    StoreClosedError,
    TenantCtx,
    UnavailableError,
    UnknownOutcomeError,
    create_session_store,
)
from greentic_session.backends.redis.cluster import ClusterCaller
from greentic_session.backends.redis.keys import RedisKeys
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.fence import lookup_slot
from greentic_session.testing import LocalCluster
from tests.conftest import make_data
from tests.stores import open_store

# Every character an identifier may hold (schema._IDENTIFIER).
ALPHABET = string.ascii_letters + string.digits + "._-"
# Healthy masters keep serving while a killed master's slots are unserved.
PARTIAL_COVERAGE = ("--cluster-require-full-coverage", "no")


def ctx_of(user: str) -> TenantCtx:
    return TenantCtx.new("prod", "tenant-a").with_user(user)


@pytest.fixture
def namespace() -> str:
    return f"cluster-{uuid.uuid4().hex[:12]}:session"


def keys_by_master(cluster: LocalCluster, namespace: str) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    for port in cluster.master_ports():
        client = sync_redis.Redis(port=port)
        try:
            found[port] = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        finally:
            client.close()
    return found


def slots_of(cluster: LocalCluster, port: int) -> list[int]:
    """The slots the master on `port` serves, from one CLUSTER SLOTS."""
    client = sync_redis.Redis(port=port)
    try:
        ranges = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    return [
        slot
        for first, last, master, *_ in ranges
        if int(master[1]) == port
        for slot in range(int(first), int(last) + 1)
    ]


# -- layout ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_ten_thousand_sessions_spread_over_every_master(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """10,000 users whose ids use every identifier character get sessions on every master, none
    holding more than twice its share, each session's blob and pointer on one node."""
    users = [
        "".join(ALPHABET[(i * 7 + j * 13) % len(ALPHABET)] for j in range(1 + i % 9)) + f"-{i}"
        for i in range(10_000)
    ]
    assert set("".join(users)) == set(ALPHABET)
    store = open_store(redis_cluster, namespace)
    async with store:
        pending = iter(users)

        async def worker() -> None:
            for user in pending:
                await store.create_session(ctx_of(user), make_data(ctx_of(user)))

        await asyncio.gather(*(worker() for _ in range(64)))
    placed = keys_by_master(redis_cluster, namespace)
    counts = {port: len(keys) for port, keys in placed.items()}
    total = sum(counts.values())
    assert total == 20_000  # a blob and a user pointer each
    share = total / len(counts)
    print(f"keys per master: {sorted(counts.values())} (share {share:.0f})")
    assert all(count <= 2 * share for count in counts.values()), counts
    assert all(count > 0 for count in counts.values()), counts
    # Each session's pointer lives on the master that holds its blob.
    layout = RedisKeys(namespace, cluster=True)
    for port, keys in placed.items():
        here = set(keys)
        client = sync_redis.Redis(port=port)
        try:
            pointers = [key for key in keys if key.startswith(layout.user_prefix.encode())]
            for pointer in pointers:
                value = client.get(pointer)
                assert value is not None
                assert layout.session(value.decode()).encode() in here
        finally:
            client.close()


async def test_cluster_namespace_with_braces_is_refused(redis_cluster: LocalCluster) -> None:
    """A namespace holding a hash tag would put every session in one slot: refused up front."""
    with pytest.raises(InvalidInputError, match="may not contain"):
        SessionBackendConfig.redis_cluster(redis_cluster.startup_urls, namespace="{app}:session")


async def test_one_cluster_url_reaches_the_cluster(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """A `redis+cluster://host1:port,host2:port` URL builds the same options as the startup URLs,
    and a store from it (`from_url`, or a config's `redis_url`) stores and finds sessions there."""
    hosts = ",".join(url.removeprefix("redis://") for url in redis_cluster.startup_urls)
    url = f"redis+cluster://{hosts}/0"
    by_url = SessionBackendConfig.redis_url(url, namespace=namespace, idle_ttl=60)
    by_list = SessionBackendConfig.redis_cluster(
        [f"{node}/0" for node in redis_cluster.startup_urls], namespace=namespace, idle_ttl=60
    )
    assert by_url == by_list
    ctx = ctx_of("url-user")
    async with RedisSessionStore.from_url(url, namespace=namespace) as store:
        assert store.is_cluster
        key = await store.create_session(ctx, make_data(ctx))
    async with create_session_store(by_url) as store:
        assert await store.find_by_user(ctx, "url-user") == (key, make_data(ctx))
        await store.remove_session(key)


async def test_a_wait_key_must_carry_its_users_tag(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """register_wait refuses a key without the user's tag, and takes the one session_key_for
    builds, whose session, pointer and wait keys then share one slot."""
    from greentic_session import ReplyScope

    ctx, chat = ctx_of("user-1"), ReplyScope(conversation="c-1")
    async with open_store(redis_cluster, namespace) as store:
        with pytest.raises(InvalidInputError, match="session_key_for"):
            await store.register_wait(ctx, "user-1", chat, "plain", make_data(ctx))
        key = store.session_key_for(ctx, "user-1", "plain")
        assert key != "plain"
        assert store.session_key_for(ctx, "user-1", key) == key  # already tagged: unchanged
        await store.register_wait(
            ctx, "user-1", ReplyScope(conversation="c-1"), key, make_data(ctx)
        )
        assert await store.find_wait_by_scope(ctx, "user-1", ReplyScope(conversation="c-1")) == key
    slots = {
        LocalCluster.slot_of(name)
        for keys in keys_by_master(redis_cluster, namespace).values()
        for name in keys
    }
    assert len(slots) == 1


async def test_caller_keys_without_a_tag_work_in_two_ordered_steps(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """A caller's untagged key, whose blob and pointer live in different slots, is created,
    found, updated, touched and removed like any other, and leaves no key behind."""
    ctx = ctx_of("user-2")
    async with open_store(redis_cluster, namespace, idle_ttl=60) as store:
        layout = RedisKeys(namespace, cluster=True)
        key = "telegram-chat-42"
        assert LocalCluster.slot_of(layout.session(key)) != LocalCluster.slot_of(
            layout.user(lookup_slot(ctx, "user-2"))
        )
        await store.create_session(ctx, make_data(ctx), key=key)
        found = await store.find_by_user(ctx, "user-2")
        assert found is not None
        assert found[0] == key
        await store.update_session(key, make_data(ctx, node="node.next"))
        await store.touch_session(key)
        entry, created = await store.find_or_create(ctx, "user-2", lambda: make_data(ctx))
        assert (entry.key, created) == (key, False)
        await store.remove_session(key)
        assert await store.find_by_user(ctx, "user-2") is None
    assert keys_by_master(redis_cluster, namespace) == {
        port: [] for port in redis_cluster.master_ports()
    }


# -- a slot left half-moved ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_masters() -> Iterator[LocalCluster]:
    with LocalCluster(masters=2) as cluster:
        yield cluster


@pytest.mark.parametrize("moved", ["pointer", "blob"])
@pytest.mark.parametrize("tagged", [True, False], ids=["store-key", "caller-key"])
async def test_half_moved_slot_never_fails_a_read_or_drops_a_live_pointer(
    two_masters: LocalCluster, namespace: str, moved: str, tagged: bool
) -> None:
    """With a migration stopped after moving one of a session's keys (its pointer, or its blob),
    get, find_by_user, find_entry and find_or_create all still find it, and its pointer stays;
    once the slot finishes moving, all is as before."""
    cluster = two_masters
    ctx = ctx_of(f"half-{moved}-{tagged}")
    user = ctx.normalized_user
    assert user is not None
    layout = RedisKeys(namespace, cluster=True)
    data = make_data(ctx)
    async with open_store(cluster, namespace) as store:
        key = await store.create_session(ctx, data, key=None if tagged else f"caller-{moved}")
        pointer = layout.user(lookup_slot(ctx, user))
        moving = pointer if moved == "pointer" else layout.session(key)
        slot = LocalCluster.slot_of(moving)
        src = cluster.owner_of_slot(slot)
        (dst,) = (port for port in cluster.master_ports() if port != src)
        await asyncio.to_thread(cluster.begin_migration, slot, src, dst)
        try:
            await asyncio.to_thread(cluster.migrate_keys, src, dst, [moving])
            for _ in range(3):
                assert await store.get_session(key) == data
                assert await store.find_by_user(ctx, user) == (key, data)
                entry = await store.find_entry(ctx, user)
                assert entry is not None
                assert entry.key == key
                found, created = await store.find_or_create(ctx, user, lambda: data)
                assert (found.key, created) == (key, False)
            holder = dst if moved == "pointer" else cluster.owner_of_slot(cluster.slot_of(pointer))
            client = sync_redis.Redis(port=holder)
            try:
                if moved == "pointer":
                    client.execute_command("ASKING")
                assert client.get(pointer) == key.encode()
            finally:
                client.close()
        finally:
            await asyncio.to_thread(cluster.finish_migration, slot, src, dst)
        assert await store.find_by_user(ctx, user) == (key, data)
        await store.remove_session(key)


# -- faults under load -------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What every call of a `Load` returned or raised."""

    acked: dict[str, int] = field(default_factory=dict)  # key -> last acknowledged counter
    unknown: dict[str, int] = field(default_factory=Counter)  # key -> unknown-outcome writes
    errors: Counter[str] = field(default_factory=Counter)  # "read:Type" / "write:Type"
    untyped: list[BaseException] = field(default_factory=list)  # anything not a SessionError
    messages: set[str] = field(default_factory=set)  # each distinct error text, for failures
    conflicts: int = 0  # a single writer's CAS conflicting: its own write applied twice
    error_seconds: list[float] = field(default_factory=list)  # time to each failure
    # successes per master port of the key's slot, in the fault window
    ok_during: Counter[int] = field(default_factory=Counter)


def counter_of(data: SessionData) -> int:
    return int(json.loads(data.context_json)["n"])


class Load:
    """One single-writer compare-and-set loop per session, plus a reader per session: every
    acknowledged write is one step of a counter, so a write applied twice shows up as a conflict
    and a lost one as a counter behind its acknowledgement."""

    def __init__(self, store: SessionStore, sessions: int, *, caller_keys: bool = False) -> None:
        self.store = store
        self.users = [f"load-{i}" for i in range(sessions)]
        self.caller_keys = caller_keys  # untagged keys of the caller's: two-step calls
        self.keys: dict[str, str] = {}
        self.out = Outcomes()
        self.stop = asyncio.Event()
        self.window: tuple[float, float] | None = None  # fault window (monotonic)
        self.owner_of: dict[str, int] = {}  # key -> master port, filled by the drill
        self._progress = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        for user in self.users:
            ctx = ctx_of(user)
            chosen = f"chat-{user}" if self.caller_keys else None
            data = make_data(ctx, state='{"n": 0}')
            key = await self.store.create_session(ctx, data, key=chosen)
            self.keys[user] = key
            self.out.acked[key] = 0
        for user in self.users:
            self.tasks.append(asyncio.create_task(self._write(user)))
            self.tasks.append(asyncio.create_task(self._read(user)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def progressed(self, writes: int) -> None:
        """Wait until every session took `writes` more acknowledged writes."""
        target = {key: n + writes for key, n in self.out.acked.items()}
        async with self._progress:
            await self._progress.wait_for(
                lambda: all(self.out.acked[key] >= n for key, n in target.items())
            )

    def _record(self, kind: str, key: str, exc: BaseException, started: float) -> None:
        if not isinstance(exc, SessionError):
            self.out.untyped.append(exc)
            return
        self.out.errors[f"{kind}:{type(exc).__name__}"] += 1
        self.out.messages.add(f"{kind}: {exc}")
        self.out.error_seconds.append(time.monotonic() - started)

    def _ok(self, key: str) -> None:
        window = self.window
        if window is not None and window[0] <= time.monotonic() <= window[1]:
            port = self.owner_of.get(key)
            if port is not None:
                self.out.ok_during[port] += 1

    async def _write(self, user: str) -> None:
        ctx, key = ctx_of(user), self.keys[user]
        n = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                entry = await self.store.get_entry(key)
                assert entry is not None
                n = counter_of(entry.data)
                data = make_data(ctx, state=json.dumps({"n": n + 1}))
                await self.store.update_session(key, data, expected_revision=entry.revision)
            except ConflictError:
                self.out.conflicts += 1
            except UnknownOutcomeError as exc:
                self.out.unknown[key] += 1
                self._record("write", key, exc, started)
            except Exception as exc:  # recorded: the drill asserts on it
                self._record("write", key, exc, started)
            else:
                self.out.acked[key] = n + 1
                self._ok(key)
                async with self._progress:
                    self._progress.notify_all()
            await asyncio.sleep(0)

    async def _read(self, user: str) -> None:
        ctx, key = ctx_of(user), self.keys[user]
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                found = await self.store.find_by_user(ctx, user)
                assert found is not None, "a live session was not found"
                assert found[0] == key
            except AssertionError as exc:
                self.out.untyped.append(exc)
            except Exception as exc:
                self._record("read", key, exc, started)
            else:
                self._ok(key)
            await asyncio.sleep(0)

    async def check_nothing_lost(self, *, lost_allowed: int = 0) -> int:
        """Every session's counter is at its last acknowledgement or (an unknown outcome that
        applied) beyond it by at most its unknown writes; returns how many were behind."""
        behind = 0
        for user, key in self.keys.items():
            entry = await self.store.get_entry(key)
            assert entry is not None, "a session was lost"
            n = counter_of(entry.data)
            acked = self.out.acked[key]
            assert n <= acked + self.out.unknown[key], (n, acked)
            if n < acked:
                behind += 1
            found = await self.store.find_by_user(ctx_of(user), user)
            assert found is not None
            assert found[0] == key
        assert behind <= lost_allowed, f"{behind} acknowledged writes lost"
        return behind


async def assert_every_pointer_names_a_blob(cluster: LocalCluster, namespace: str) -> None:
    layout = RedisKeys(namespace, cluster=True)
    async with open_store(cluster, namespace) as store:
        for keys in keys_by_master(cluster, namespace).values():
            for name in keys:
                if name.startswith(layout.user_prefix.encode()):
                    client = sync_redis.Redis(port=cluster.owner_of_slot(cluster.slot_of(name)))
                    try:
                        value = client.get(name)
                    finally:
                        client.close()
                    assert value is not None
                    assert await store.get_session(value.decode()) is not None


@pytest.mark.slow
@pytest.mark.parametrize("caller_keys", [False, True], ids=["store-keys", "caller-keys"])
async def test_migrating_a_thousand_slots_under_load(namespace: str, caller_keys: bool) -> None:
    """While 1,000 slots move to another master under reads and compare-and-set writes (on
    store-minted keys, or on caller keys whose pointer lives in another slot), no read fails,
    writes raise only typed errors, none applies twice, none acknowledged is lost, and no pointer
    names a missing blob."""
    with LocalCluster(masters=3) as cluster:
        async with open_store(cluster, namespace, socket_timeout=2.0, idle_ttl=600) as store:
            src, dst = cluster.master_ports()[:2]
            async with Load(store, sessions=48, caller_keys=caller_keys) as load:
                # The slots of every session (and pointer) on `src` move, with others up to 1,000.
                layout = RedisKeys(namespace, cluster=True)
                ours = {cluster.slot_of(layout.session(key)) for key in load.keys.values()}
                ours |= {
                    cluster.slot_of(layout.user(lookup_slot(ctx_of(user), user)))
                    for user in load.users
                }
                owned = slots_of(cluster, src)
                moving = [s for s in owned if s in ours]
                assert len(moving) >= 5
                slots = moving + [s for s in owned if s not in ours][: 1000 - len(moving)]
                await load.progressed(3)
                await asyncio.to_thread(cluster.migrate_slots, slots, src, dst)
                await load.progressed(3)
            assert load.out.untyped == []
            assert load.out.conflicts == 0
            assert not any(kind.startswith("read:") for kind in load.out.errors), load.out.errors
            assert set(load.out.errors) <= {"write:UnavailableError", "write:UnknownOutcomeError"}
            await load.check_nothing_lost()
            assert set(slots) <= set(slots_of(cluster, dst))
        await assert_every_pointer_names_a_blob(cluster, namespace)


@pytest.mark.slow
async def test_manual_failover_under_load(namespace: str) -> None:
    """A manual failover of a master under load fails no call, applies no write twice and loses
    no acknowledged write; calls then reach the promoted replica."""
    with LocalCluster(masters=3, replicas=1) as cluster:
        async with open_store(cluster, namespace, socket_timeout=2.0) as store:
            old = cluster.master_ports()[0]
            async with Load(store, sessions=24) as load:
                await load.progressed(3)
                new = await asyncio.to_thread(cluster.manual_failover, old)
                await load.progressed(3)
            assert new in cluster.master_ports()
            assert load.out.untyped == []
            assert load.out.conflicts == 0
            assert set(load.out.errors) <= {
                "write:UnavailableError",
                "write:UnknownOutcomeError",
            }, load.out.messages
            await load.check_nothing_lost()
        await assert_every_pointer_names_a_blob(cluster, namespace)


@pytest.mark.slow
async def test_killed_master_fails_only_its_own_calls_and_recovers(namespace: str) -> None:
    """A master killed with SIGKILL under load fails only the calls for its slots, each with
    UnavailableError or UnknownOutcomeError within the socket timeout, while the other masters'
    calls keep succeeding; once its replica is promoted every session is served again, with no
    write applied twice (acknowledged writes Redis's asynchronous replication lost are counted)."""
    timeout = 1.0
    with LocalCluster(
        masters=3, replicas=1, appendonly=True, node_timeout_ms=1000, node_args=PARTIAL_COVERAGE
    ) as cluster:
        async with open_store(cluster, namespace, socket_timeout=timeout) as store:
            victim = cluster.master_ports()[0]
            async with Load(store, sessions=30) as load:
                layout = RedisKeys(namespace, cluster=True)
                for key in load.keys.values():
                    load.owner_of[key] = cluster.owner_of_slot(cluster.slot_of(layout.session(key)))
                assert victim in load.owner_of.values()
                assert len(set(load.owner_of.values())) == 3
                await load.progressed(3)
                start = time.monotonic()
                load.window = (start, start + 3600)
                await asyncio.to_thread(cluster.kill_master, victim)
                promoted = await asyncio.to_thread(cluster.wait_for_promotion, victim)
                load.window = (start, time.monotonic())
                await load.progressed(3)
            healthy = [port for port in set(load.owner_of.values()) if port != victim]
            assert promoted not in healthy
            assert load.out.untyped == []
            assert load.out.conflicts == 0
            assert set(load.out.errors) <= {
                "read:UnavailableError",
                "write:UnavailableError",
                "write:UnknownOutcomeError",
            }, load.out.errors
            assert sum(load.out.errors.values()) > 0  # the victim's calls did fail
            assert max(load.out.error_seconds) < timeout + 0.5
            assert all(load.out.ok_during[port] > 0 for port in healthy), load.out.ok_during
            victims = sum(1 for port in load.owner_of.values() if port == victim)
            lost = await load.check_nothing_lost(lost_allowed=victims)
            print(f"acknowledged writes lost to asynchronous replication: {lost} of {victims}")
        await assert_every_pointer_names_a_blob(cluster, namespace)


async def test_a_dead_cluster_is_a_typed_error(namespace: str) -> None:
    """A store whose startup nodes are all down raises UnavailableError, never a raw error."""
    with LocalCluster(masters=1) as cluster:
        urls = cluster.startup_urls
    store = create_session_store(SessionBackendConfig.redis_cluster(urls, namespace=namespace))
    async with store:
        with pytest.raises(UnavailableError, match="no master"):
            await store.get_session("some-key")


@pytest.mark.slow
async def test_random_cancellations_during_a_migration_leave_the_store_sound(
    namespace: str,
) -> None:
    """Cancelling 400 calls at random points while 2,000 slots move between masters never hands
    a reply to the wrong request, and every session reads back its own data afterwards."""
    from tests.test_redis_faults import CancelDrill, bounded, marked
    from tests.test_redis_faults import ctx_of as drill_ctx

    with LocalCluster(masters=2) as cluster:
        store = open_store(cluster, namespace)
        assert isinstance(store, RedisSessionStore)
        async with store:
            owners = {}
            for n in range(16):
                user = f"base-{n}"
                key = await store.create_session(drill_ctx(user), marked(user, "pending"))
                await store.update_session(key, marked(user, key))
                owners[key] = user
            drill = CancelDrill(store, owners)
            creates = (
                store.create_session(drill_ctx(f"doomed-{n}"), marked(f"doomed-{n}", "x"))
                for n in range(100)
            )
            drill.removable = list(await bounded(asyncio.gather(*creates)))
            src, dst = cluster.master_ports()
            moving = asyncio.create_task(
                asyncio.to_thread(cluster.migrate_slots, slots_of(cluster, src)[:2000], src, dst)
            )
            for _ in range(50):  # 50 waves of 8 cancelled calls, each followed by checked reads
                wave = [
                    drill.cancelled(drill.random_call(), drill.rng.uniform(0, 0.004))
                    for _ in range(8)
                ]
                await bounded(asyncio.gather(*wave))
                await drill.verify()
            await moving
            await drill.verify_all()
            assert drill.outcomes["cancelled"] >= 20, drill.outcomes
            assert drill.outcomes["completed"] >= 20, drill.outcomes
            for node in store.pool_stats().nodes.values():
                assert node.in_use == 0


@pytest.mark.parametrize("key", ["}abc", "{x}y", "a{b}c", "{}", "{0123abcd"])
async def test_caller_keys_holding_braces_keep_their_keys_in_one_slot(
    redis_cluster: LocalCluster, namespace: str, key: str
) -> None:
    """A caller's key holding braces (a hash tag of its own, an empty one, a lone brace) gets its
    blob, meta and hint keys in one slot, and every call on it works."""
    ctx = ctx_of("user-braces")
    layout = RedisKeys(namespace, cluster=True)
    own = {
        LocalCluster.slot_of(name(key)) for name in (layout.session, layout.meta, layout.wait_hint)
    }
    assert len(own) == 1
    async with open_store(redis_cluster, namespace, idle_ttl=60, max_lifetime=600) as store:
        await store.create_session(ctx, make_data(ctx), key=key)
        await store.update_session(key, make_data(ctx, node="node.next"))
        await store.touch_session(key)
        assert await store.find_by_user(ctx, "user-braces") == (
            key,
            make_data(ctx, node="node.next"),
        )
        await store.remove_session(key)
        assert await store.get_session(key) is None
        assert await store.find_by_user(ctx, "user-braces") is None  # clears the pointer
    assert keys_by_master(redis_cluster, namespace) == {
        port: [] for port in redis_cluster.master_ports()
    }


async def test_aclose_stops_a_call_waiting_out_a_migration(
    two_masters: LocalCluster, namespace: str
) -> None:
    """An update waiting for a half-moved slot when the store closes raises StoreClosedError,
    writes nothing once the slot settles, and leaves no connection open."""
    cluster = two_masters
    ctx = ctx_of("closing")
    layout = RedisKeys(namespace, cluster=True)
    store = open_store(cluster, namespace, socket_timeout=10.0)
    assert isinstance(store, RedisSessionStore)
    key = await store.create_session(ctx, make_data(ctx))
    blob = layout.session(key)
    slot = LocalCluster.slot_of(blob)
    src = cluster.owner_of_slot(slot)
    (dst,) = (port for port in cluster.master_ports() if port != src)
    router = store.caller
    assert isinstance(router, ClusterCaller)
    waiting = asyncio.Event()
    wait_out = router._wait_out

    async def spy(*args: Any) -> None:  # tells the test the call is waiting; changes nothing
        waiting.set()
        await wait_out(*args)

    router._wait_out = spy  # type: ignore[method-assign]
    await asyncio.to_thread(cluster.begin_migration, slot, src, dst)
    try:
        await asyncio.to_thread(cluster.migrate_keys, src, dst, [blob])  # blob moved, rest not
        update = asyncio.create_task(store.update_session(key, make_data(ctx, node="late")))
        await waiting.wait()
        await store.aclose()
    finally:
        await asyncio.to_thread(cluster.finish_migration, slot, src, dst)
    with pytest.raises(StoreClosedError):
        await update
    assert router.nodes() == {}
    async with open_store(cluster, namespace) as reader:
        assert await reader.get_session(key) == make_data(ctx)
        await reader.remove_session(key)


@pytest.mark.slow
async def test_waits_under_a_slot_migration(namespace: str) -> None:
    """While 1,000 slots move, registering, finding and listing waits raise nothing, and every
    wait is found by its scope once they have moved."""
    from greentic_session import ReplyScope

    with LocalCluster(masters=2) as cluster:
        async with open_store(cluster, namespace, socket_timeout=2.0) as store:
            users = [f"waiter-{n}" for n in range(24)]
            scopes = [ReplyScope(conversation=f"chat-{n}") for n in range(3)]
            registered: dict[tuple[str, int], str] = {}
            errors: list[BaseException] = []
            stop = asyncio.Event()

            async def churn(user: str) -> None:
                ctx, turn = ctx_of(user), 0
                while not stop.is_set() or turn < 3:
                    n = turn % len(scopes)
                    key = store.session_key_for(ctx, user, f"wait-{user}-{turn}")
                    try:
                        await store.register_wait(ctx, user, scopes[n], key, make_data(ctx))
                        registered[(user, n)] = key
                        assert await store.find_wait_by_scope(ctx, user, scopes[n]) == key
                        assert key in await store.list_waits_for_user(ctx, user)
                    except Exception as exc:  # recorded: asserted on below
                        errors.append(exc)
                    turn += 1

            src, dst = cluster.master_ports()
            layout = RedisKeys(namespace, cluster=True)
            ours = {cluster.slot_of(layout.user(lookup_slot(ctx_of(u), u))) for u in users}
            owned = slots_of(cluster, src)
            moving = [slot for slot in owned if slot in ours]  # every user's slot on src
            assert len(moving) >= 5
            slots = moving + [slot for slot in owned if slot not in ours][: 1000 - len(moving)]
            tasks = [asyncio.create_task(churn(user)) for user in users]
            await asyncio.to_thread(cluster.migrate_slots, slots, src, dst)
            during = len(registered)  # distinct (user, scope) pairs registered while moving
            stop.set()
            await asyncio.gather(*tasks)
            assert errors == []
            assert during >= len(users), "the waits did not churn while the slots moved"
            for (user, n), key in registered.items():
                assert await store.find_wait_by_scope(ctx_of(user), user, scopes[n]) == key
