"""Redis Sentinel: configuration, the store through sentinels, and a failover under writes.

Real servers on loopback: a primary, a replica and three sentinels (`SentinelCluster`). The
shared topology (`sentinel_cluster`) is never failed over; the failover test starts its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme

from greentic_session import (
    ConflictError,
    InvalidInputError,
    RedisSessionStore,
    SessionBackendConfig,
    SessionError,
    TenantCtx,
    UnavailableError,
    UnknownOutcomeError,
    create_session_store,
)
from greentic_session.backends.redis.options import RedisSentinelOptions
from greentic_session.backends.redis.sentinel import PrimaryPool
from greentic_session.testing import SentinelCluster, TLSFiles, free_port
from tests.conftest import make_data

PASSWORD = "n0de-Pa55-91c2"
SENTINEL_PASSWORD = "sent-Pa55-4b7e"


def ctx(user: str | None = "user-1") -> TenantCtx:
    return TenantCtx.new("dev", "tenant-1", user=user)


def primary_client(cluster: SentinelCluster) -> aioredis.Redis:
    return aioredis.Redis(port=cluster.primary_port())


# -- configuration ---------------------------------------------------------------------------------


def test_sentinel_url_is_parsed_into_its_parts() -> None:
    """A redis+sentinel:// URL yields the hosts, service, db, TLS and both sets of credentials."""
    options = RedisSentinelOptions.from_url(
        f"rediss+sentinel://sadmin:{SENTINEL_PASSWORD}@10.0.0.1,[::1]:26380/prod-sessions/3"
        f"?username=app&password={PASSWORD}",
        tls_ca_file="/ca.pem",
    )
    assert options.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (options.service_name, options.db, options.tls) == ("prod-sessions", 3, True)
    assert (options.sentinel_username, options.sentinel_password) == ("sadmin", SENTINEL_PASSWORD)
    assert (options.username, options.password) == ("app", PASSWORD)
    assert options.address == "rediss+sentinel://10.0.0.1:26379,[::1]:26380/prod-sessions/3"


def test_redis_sentinel_config_matches_the_url_form() -> None:
    """`redis_sentinel(...)` and the equivalent URL build the same options."""
    by_args = SessionBackendConfig.redis_sentinel(
        [f"redis://:{SENTINEL_PASSWORD}@s2", f"redis://:{SENTINEL_PASSWORD}@s1:26379"],
        "svc",
        db=2,
        password=PASSWORD,
        max_connections=8,
    )
    by_url = SessionBackendConfig.redis_url(
        f"redis+sentinel://:{SENTINEL_PASSWORD}@s2,s1:26379/svc/2?password={PASSWORD}",
        max_connections=8,
    )
    assert by_args.redis == by_url.redis


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+sentinel://h1:26379/", "service"),
        ("redis+sentinel://h1:99999/svc", "port"),
        ("redis+sentinel:///svc", "host"),
        ("redis+sentinel://h1/svc/x", "database"),
        ("redis+sentinel://h1/bad name/0", "service_name"),
        ("redis+sentinel://h1/svc?socket_timeout=1", "query option #1"),
        (f"redis+sentinel://{PASSWORD}@h1/svc", "user info"),
        (f"redis+sentinel://:pa/ss{PASSWORD}@h1/svc", "percent-encode"),
    ],
)
def test_bad_sentinel_url_names_the_wrong_part_and_no_secret(url: str, names: str) -> None:
    """A malformed sentinel URL raises InvalidInputError naming the part, never the password."""
    with pytest.raises(InvalidInputError) as caught:
        SessionBackendConfig.redis_url(url)
    assert names in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "pa/ss" not in str(caught.value)


@pytest.mark.parametrize(
    ("urls", "names"),
    [
        ([], "non-empty list"),
        ("redis://h1:26379", "non-empty list"),
        (["http://h1:26379"], "sentinel URL #1: the scheme"),
        (["redis://h1:26379", "redis://h2:0"], "sentinel URL #2: the port"),
        (["redis://h1:26379/svc"], "sentinel URL #1: a sentinel URL is only"),
        ([f"redis://:{PASSWORD}@h1", "redis://h2"], "same credentials"),
        (["redis://h1", "rediss://h2"], "same scheme"),
    ],
)
def test_bad_sentinel_urls_name_the_wrong_one(urls: list[str], names: str) -> None:
    """`redis_sentinel` refuses a bad sentinel list, naming which URL and what, never a secret."""
    with pytest.raises(InvalidInputError) as caught:
        SessionBackendConfig.redis_sentinel(urls, "svc")
    assert names in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_tls_ca_file_without_tls_is_refused() -> None:
    """A CA file with plain-text sentinels is a mistake caught at configuration time."""
    with pytest.raises(InvalidInputError, match="tls_ca_file needs TLS"):
        SessionBackendConfig.redis_sentinel(["redis://h1"], "svc", tls_ca_file="/ca.pem")


def test_plain_options_refuse_a_sentinel_url() -> None:
    """RedisOptions built by hand with a sentinel URL points at RedisSentinelOptions."""
    from greentic_session.backends.redis.options import RedisOptions

    with pytest.raises(InvalidInputError, match="RedisSentinelOptions"):
        RedisOptions(url="redis+sentinel://h1/svc")


async def test_construction_is_lazy_and_reprs_hide_secrets() -> None:
    """Nothing connects at construction; the repr names service and hosts; no secret shows."""
    dead = free_port()  # nothing listens here
    url = f"redis+sentinel://:{SENTINEL_PASSWORD}@127.0.0.1:{dead}/svc/0?password={PASSWORD}"
    config = SessionBackendConfig.redis_url(url)
    store = create_session_store(config)  # would fail if it connected
    try:
        for text in (repr(config), repr(config.redis), repr(store)):
            assert f"redis+sentinel://127.0.0.1:{dead}/svc/0" in text
            assert PASSWORD not in text
            assert SENTINEL_PASSWORD not in text
        with pytest.raises(UnavailableError) as caught:
            await store.get_session("k1")
        error = caught.value
        chain = [error, error.__cause__, error.__context__]
        assert all(PASSWORD not in repr(e) and SENTINEL_PASSWORD not in repr(e) for e in chain)
        assert "svc" in str(error)
    finally:
        await store.aclose()


async def test_hand_built_sentinel_client_is_described_by_its_service() -> None:
    """A store around a Sentinel-managed client built by hand names the service, not '?:?'."""
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    client = Sentinel([("127.0.0.1", 26379)]).master_for(  # type: ignore[no-untyped-call]
        "svc", retry=Retry(NoBackoff(), 0)
    )
    store = RedisSessionStore(client)
    assert "redis+sentinel://127.0.0.1:26379/svc/0" in repr(store)
    await client.aclose()


# -- the store through sentinels -------------------------------------------------------------------


async def test_store_works_through_sentinel(sentinel_cluster: SentinelCluster) -> None:
    """Every call works through Sentinel, and the data lands on the primary Sentinel names."""
    namespace = f"test-{uuid.uuid4().hex}:session"
    config = SessionBackendConfig.redis_sentinel(
        sentinel_cluster.sentinel_urls, sentinel_cluster.service_name, namespace=namespace
    )
    async with create_session_store(config) as store:
        owner = ctx()
        key = await store.create_session(owner, make_data(owner, node="n1"))
        assert (await store.find_by_user(owner, "user-1")) is not None
        entry = await store.get_entry(key)
        assert entry is not None
        assert entry.data.cursor.node_pointer == "n1"
        await store.update_session(
            key, make_data(owner, node="n2"), expected_revision=entry.revision
        )
        with pytest.raises(ConflictError):
            await store.update_session(
                key, make_data(owner, node="n3"), expected_revision=entry.revision
            )
        got = await store.get_session(key)
        assert got is not None
        assert got.cursor.node_pointer == "n2"
        primary = primary_client(sentinel_cluster)
        try:
            assert await primary.exists(f"{namespace}:session:{key}") == 1
        finally:
            await primary.aclose()
        await store.remove_session(key)
        assert await store.get_session(key) is None
        assert await store.find_by_user(owner, "user-1") is None
        pool = store.client.connection_pool  # type: ignore[attr-defined]
        assert isinstance(pool, PrimaryPool)
        assert pool.master_address is not None
        assert int(pool.master_address[1]) == sentinel_cluster.primary_port()


async def test_sentinel_store_builds_one_pool(sentinel_cluster: SentinelCluster) -> None:
    """Many calls share one primary pool (redis-py's master_for builds one per call)."""
    store = RedisSessionStore.from_sentinel(
        sentinel_cluster.sentinel_urls,
        sentinel_cluster.service_name,
        namespace=f"test-{uuid.uuid4().hex}:session",
        max_connections=4,
    )
    async with store:
        pool = store.client.connection_pool
        await asyncio.gather(*(store.get_session(f"k{n}") for n in range(50)))
        assert store.client.connection_pool is pool
        connections = len(pool._available_connections) + len(pool._in_use_connections)  # type: ignore[attr-defined]
        assert 1 <= connections <= 4


async def round_trip(store: RedisSessionStore) -> None:
    owner = ctx()
    key = await store.create_session(owner, make_data(owner))
    assert await store.find_by_user(owner, "user-1") is not None
    await store.remove_session(key)


async def test_credentials_reach_sentinels_and_data_nodes_and_never_show() -> None:
    """Sentinel credentials come from the sentinel URLs, the data nodes' from the options; a
    wrong one of either raises an `unauthenticated` UnavailableError that shows no password."""
    with SentinelCluster(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD) as cluster:
        namespace = f"test-{uuid.uuid4().hex}:session"
        service = cluster.service_name
        async with RedisSessionStore.from_url(cluster.url, namespace=namespace) as store:
            await round_trip(store)
        async with RedisSessionStore.from_sentinel(
            cluster.sentinel_urls, service, password=PASSWORD, namespace=namespace
        ) as store:
            await round_trip(store)
        wrong_sentinel = [url.replace(SENTINEL_PASSWORD, "nope") for url in cluster.sentinel_urls]
        wrong = [
            RedisSessionStore.from_sentinel(wrong_sentinel, service, password=PASSWORD),
            RedisSessionStore.from_sentinel(cluster.sentinel_urls, service, password="nope"),
            RedisSessionStore.from_sentinel(cluster.sentinel_urls, service),
        ]
        for store in wrong:
            async with store:
                with pytest.raises(UnavailableError) as caught:
                    await store.get_session("k1")
                texts = [repr(store), str(caught.value), repr(caught.value.__cause__)]
                assert all(PASSWORD not in t and SENTINEL_PASSWORD not in t for t in texts)
        # Only the data-node refusals are named as such: a sentinel that refuses the
        # credentials leaves redis-py with no primary to report.
        assert "rejected the credentials" in str(caught.value)


async def test_tls_to_sentinels_and_data_nodes(tmp_path: Path) -> None:
    """With rediss:// sentinel URLs the store reaches sentinels and data nodes over TLS, trusting
    the CA in tls_ca_file."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files = TLSFiles(
        str(tmp_path / "server.pem"), str(tmp_path / "server.key"), str(tmp_path / "ca.pem")
    )
    with SentinelCluster(tls=files) as cluster:
        assert cluster.url.startswith("rediss+sentinel://")
        store = RedisSessionStore.from_url(
            cluster.url,
            namespace=f"test-{uuid.uuid4().hex}:session",
            tls_ca_file=files.ca,
        )
        async with store:
            await round_trip(store)


def test_sentinel_store_moves_to_a_new_event_loop(sentinel_cluster: SentinelCluster) -> None:
    """A Sentinel store used from one `asyncio.run` and then another keeps working: the primary
    pool, the sentinels' pools and the +switch-master listener all follow the new loop."""
    store = RedisSessionStore.from_url(
        sentinel_cluster.url, namespace=f"test-{uuid.uuid4().hex}:session"
    )
    asyncio.run(round_trip(store))
    asyncio.run(round_trip(store))
    asyncio.run(store.aclose())


# -- failover under writes -------------------------------------------------------------------------


@dataclass
class Write:
    key: str
    started: float
    saw_new_primary: bool  # the pool already knew the new primary when this write started
    acked: float | None = None
    error: SessionError | None = None


# A primary with no replica attached refuses writes (NOREPLICAS): the promoted replica detaches
# from the old primary at once, so the old primary stops acknowledging writes it would lose.
MIN_REPLICAS = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("watch_switches", "data_args"),
    [(True, ()), (False, ()), (True, MIN_REPLICAS)],
    ids=["switch-master", "readonly-only", "switch-master+min-replicas"],
)
async def test_failover_under_writes_loses_only_writes_before_the_switch(
    watch_switches: bool, data_args: tuple[str, ...]
) -> None:
    """During `SENTINEL FAILOVER` under steady writes, errors are typed, writes move to the new
    primary, and no write acknowledged after the store saw the new primary is lost (through
    Sentinel's `+switch-master`, or with only the demoted primary's `READONLY` as a signal;
    `min-replicas-to-write` on the servers makes the old primary refuse what it would lose)."""
    # A topology of its own: after a failover one needs ~20 s to settle for the next.
    with SentinelCluster(data_args=data_args) as cluster:
        await failover_under_writes(cluster, watch_switches=watch_switches, data_args=data_args)


async def failover_under_writes(
    cluster: SentinelCluster, *, watch_switches: bool, data_args: tuple[str, ...]
) -> None:
    namespace = f"test-{uuid.uuid4().hex}:session"
    store = RedisSessionStore.from_url(cluster.url, namespace=namespace, socket_timeout=1.0)
    pool = store.client.connection_pool
    assert isinstance(pool, PrimaryPool)
    owner = ctx(user=None)
    data = make_data(owner)
    writes: list[Write] = []
    old_port = cluster.primary_port()
    new_port: int | None = None
    stop = asyncio.Event()  # the writers stop

    def knows_new_primary() -> bool:
        address = pool.master_address
        return new_port is not None and address is not None and int(address[1]) == new_port

    warmed_up = asyncio.Event()  # 50 writes acked on the old primary
    moved = asyncio.Event()  # 50 writes acked that started once the store knew the new primary
    acked_on_new = 0

    async def writer(scripted: bool) -> None:
        # Scripted writes run create.lua; the others a MULTI/EXEC (a store-minted key).
        nonlocal acked_on_new
        while not stop.is_set():
            key = uuid.uuid4().hex
            write = Write(key, time.monotonic(), knows_new_primary())
            writes.append(write)
            try:
                if scripted:
                    await store.create_session(owner, data, key=key)
                else:
                    write.key = await store.create_session(owner, data)
            except SessionError as exc:
                write.error = exc
                await asyncio.sleep(0.01)  # a caller's backoff before its next write
                continue
            write.acked = time.monotonic()
            if len(writes) >= 50:
                warmed_up.set()
            acked_on_new += write.saw_new_primary
            if acked_on_new >= 50:
                moved.set()

    async with store:
        pool.watch_switches = watch_switches
        tasks = [asyncio.create_task(writer(scripted=n % 2 == 0)) for n in range(4)]
        async with asyncio.timeout(10):
            await warmed_up.wait()
        failover_at = time.monotonic()
        await asyncio.to_thread(cluster.failover)
        new_port = await asyncio.to_thread(cluster.wait_for_new_primary, old_port, 20.0)
        promoted_at = time.monotonic()
        if not watch_switches or data_args:
            # Demote the old primary now, as Sentinel does about 10 s later (its INFO period):
            # without the switch announcement the store then sees only READONLY replies; under
            # min-replicas-to-write the new primary accepts writes once it has a replica again.
            await asyncio.to_thread(cluster.demote, old_port, new_port)
        async with asyncio.timeout(30):
            await moved.wait()
        if watch_switches and not data_args:
            # Nobody demoted the old primary yet (Sentinel takes ~10 s): the announcement alone
            # moved the store.
            assert await asyncio.to_thread(cluster.role, old_port) == "master"
        switched_at = min(w.started for w in writes if w.saw_new_primary)
        stop.set()
        await asyncio.gather(*tasks)

    errors = [w.error for w in writes if w.error is not None]
    assert all(isinstance(e, UnavailableError | UnknownOutcomeError) for e in errors), errors
    if not watch_switches:  # the demoted primary's READONLY is what moved the store
        assert any("(READONLY)" in str(e) for e in errors if isinstance(e, UnavailableError))
    check = aioredis.Redis(port=new_port)
    try:
        acked = [w for w in writes if w.acked is not None]
        present = await check.mget([f"{namespace}:session:{w.key}" for w in acked])
        lost = [w for w, blob in zip(acked, present, strict=True) if blob is None]
        late = [w for w in lost if w.saw_new_primary]
        assert not late, "a write after the switch was lost"
        assert await check.exists(f"{namespace}:session:{acked[-1].key}") == 1
        keys = [key async for key in check.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await check.delete(*keys)
    finally:
        await check.aclose()
    lost_acks = [w.acked for w in lost if w.acked is not None]
    window = max(lost_acks) - min(w.started for w in lost) if lost else 0.0
    first_on_new = min(w.acked for w in acked if w.acked is not None and w.saw_new_primary)
    print(
        f"\nsentinel failover: {len(acked)} writes acked, {len(lost)} lost over {window:.2f} s; "
        f"promotion seen {promoted_at - failover_at:.2f} s after SENTINEL FAILOVER, store on "
        f"the new primary after {switched_at - failover_at:.2f} s, its first write acked after "
        f"{first_on_new - failover_at:.2f} s; "
        f"{sum(isinstance(e, UnavailableError) for e in errors)} UnavailableError, "
        f"{sum(isinstance(e, UnknownOutcomeError) for e in errors)} UnknownOutcomeError"
        f" (watching +switch-master: {watch_switches}, server flags: {' '.join(data_args)})"
    )
