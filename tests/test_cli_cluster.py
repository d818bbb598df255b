"""`greentic-session copy-to-cluster` from a real single redis-server into a real 3-master Redis
Cluster: the copied sessions are found by key and by user with their bytes and expiries, a wait
moves to its tagged key with its wait keys rebuilt, nothing in the cluster is ever overwritten,
and a dry run writes nothing."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import redis as sync_redis
from redis.cluster import ClusterNode, RedisCluster

from greentic_session import ReplyScope, TenantCtx
from greentic_session.backends.redis.keys import RedisKeys
from greentic_session.backends.redis.store import RedisSessionStore, revision_of
from greentic_session.cli import main
from greentic_session.fence import UserSlot

from .conftest import drop_namespace, make_data

if TYPE_CHECKING:
    from greentic_session.testing import LocalCluster

IDLE, LIFE = 600.0, 3600.0
# Expiries are read from the source, then written to the cluster moments later.
TOLERANCE_MS = 3000
SCOPE = ReplyScope(conversation="telegram:chat-9", thread="t-1")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.out)
        return loaded


def copy(url: str, namespace: str, cluster: LocalCluster, *argv: str) -> Run:
    """Run `copy-to-cluster --json` in process against the cluster's masters."""
    out, err = io.StringIO(), io.StringIO()
    masters = ",".join(f"redis://127.0.0.1:{port}/0" for port in cluster.master_ports())
    head = ["--url", url, "--namespace", namespace, "--json", "copy-to-cluster"]
    code = main([*head, "--to", masters, *argv], stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def ctx_of(user: str | None) -> TenantCtx:
    ctx = TenantCtx.new("prod", "acme", team="support")
    return ctx if user is None else ctx.with_user(user)


@dataclass
class Seeded:
    keys: dict[str, str]  # name in the test -> session key in the source
    pointed: dict[str, str]  # user -> the session key the source pointer names


async def seed(url: str, namespace: str) -> Seeded:
    """Sessions with expiries (and meta keys), without, one user-less, a caller-keyed one, an
    older session its user's pointer no longer names, and a wait."""
    timed = RedisSessionStore.from_url(url, namespace=namespace, idle_ttl=IDLE, max_lifetime=LIFE)
    plain = RedisSessionStore.from_url(url, namespace=namespace)
    keys: dict[str, str] = {}
    async with timed, plain:
        for n in range(3):
            user = f"timed-{n}"
            data = make_data(ctx_of(user), state=f'{{"n":{n}}}')
            keys[user] = await timed.create_session(ctx_of(user), data)
        for n in range(2):
            user = f"plain-{n}"
            keys[user] = await plain.create_session(ctx_of(user), make_data(ctx_of(user)))
        keys["older"] = await plain.create_session(ctx_of("twice"), make_data(ctx_of("twice")))
        keys["twice"] = await plain.create_session(ctx_of("twice"), make_data(ctx_of("twice")))
        keys["userless"] = await timed.create_session(ctx_of("creator"), make_data(ctx_of(None)))
        keys["mapped"] = await timed.create_session(
            ctx_of("mapped"), make_data(ctx_of("mapped")), key="tg-bot-1-chat-2-user-3"
        )
        waiter = ctx_of("waiter")
        await timed.register_wait(waiter, "waiter", SCOPE, "wait-1", make_data(waiter), ttl=900)
        keys["waiter"] = "wait-1"
    pointed = {
        "timed-0": keys["timed-0"],
        "timed-1": keys["timed-1"],
        "timed-2": keys["timed-2"],
        "plain-0": keys["plain-0"],
        "plain-1": keys["plain-1"],
        "twice": keys["twice"],
        "creator": keys["userless"],
        "mapped": keys["mapped"],
    }
    return Seeded(keys, pointed)


@pytest.fixture
def source(redis_url: str, namespace: str) -> Iterator[Seeded]:
    """The seeded sessions in a namespace of the single server, dropped afterwards."""
    yield asyncio.run(seed(redis_url, namespace))
    asyncio.run(drop_namespace(redis_url, namespace))


@pytest.fixture
def cluster_ns(redis_cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """The same namespace on the cluster, dropped from every master afterwards."""
    yield namespace
    masters = ",".join(f"redis://127.0.0.1:{port}/0" for port in redis_cluster.master_ports())
    asyncio.run(drop_namespace(masters, namespace))


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    """redis-py's cluster client, to read what the copy wrote independently of the store."""
    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.master_ports()]
    return RedisCluster(startup_nodes=nodes)


def keys_on_masters(cluster: LocalCluster, namespace: str) -> list[bytes]:
    found: list[bytes] = []
    for port in cluster.master_ports():
        client = sync_redis.Redis(port=port)
        try:
            found += list(client.scan_iter(match=f"{namespace}:*", count=1000))
        finally:
            client.close()
    return found


def source_state(url: str, namespace: str, key: str) -> tuple[bytes, int]:
    client = sync_redis.Redis.from_url(url)
    try:
        blob_key = RedisKeys(namespace).session(key)
        blob = client.get(blob_key)
        assert isinstance(blob, bytes)
        return blob, int(client.pttl(blob_key))
    finally:
        client.close()


def close(expected: int, actual: int) -> bool:
    """Two PTTLs (ms; -1 none) agree: both none, or within the copy's tolerance."""
    if expected < 0 or actual < 0:
        return expected == actual
    return abs(expected - actual) <= TOLERANCE_MS


def test_copy_finds_every_session_by_key_and_by_user_with_its_bytes_and_expiries(
    redis_url: str, redis_cluster: LocalCluster, source: Seeded, cluster_ns: str
) -> None:
    """Every session lands in the cluster layout with the same bytes and PTTLs; the cluster store
    finds each by key and by user, and its calls work on them afterwards."""
    before = {name: source_state(redis_url, cluster_ns, key) for name, key in source.keys.items()}
    run = copy(redis_url, cluster_ns, redis_cluster, "--yes")
    assert run.code == 0, run.err
    report = run.json
    assert report["sessions"] == len(source.keys)
    assert report["copied"] == len(source.keys)
    assert report["conflicts"] == []
    assert report["skipped"] == []
    assert report["pointers"] == {"copied": len(source.pointed), "already_there": 0, "taken": 0}
    cluster_keys = RedisKeys(cluster_ns, cluster=True)
    wait_key = cluster_keys.tagged_key(UserSlot("prod", "acme", "support", "waiter"), "wait-1")
    assert report["rekeyed"] == {"wait-1": wait_key}

    raw = cluster_client(redis_cluster)
    try:
        for name, key in source.keys.items():
            target = wait_key if name == "waiter" else key
            blob_key = cluster_keys.session(target)
            assert raw.get(blob_key) == before[name][0], name
            assert close(before[name][1], int(raw.pttl(blob_key))), name
        # Meta values are led by the user's tag now; lifetimes are kept.
        meta = raw.get(cluster_keys.meta(source.keys["userless"]))
        creator = UserSlot("prod", "acme", "support", "creator")
        assert meta == cluster_keys.slot_suffix(creator).encode()
        meta_pttl = int(raw.pttl(cluster_keys.meta(source.keys["timed-0"])))
        assert LIFE * 1000 - TOLERANCE_MS - 60_000 < meta_pttl <= LIFE * 1000
        pointer = cluster_keys.user(UserSlot("prod", "acme", "support", "timed-0"))
        assert close(int(IDLE * 1000), int(raw.pttl(pointer)))
    finally:
        raw.close()

    async def check() -> None:
        store = RedisSessionStore.from_cluster(
            redis_cluster.startup_urls, namespace=cluster_ns, idle_ttl=IDLE, max_lifetime=LIFE
        )
        async with store:
            for name, key in source.keys.items():
                target = wait_key if name == "waiter" else key
                entry = await store.get_entry(target)
                assert entry is not None, name
                assert entry.revision == revision_of(before[name][0])
            for user, key in source.pointed.items():
                found = await store.find_by_user(ctx_of(user), user)
                assert found is not None, user
                assert found[0] == key
            waiter = ctx_of("waiter")
            assert await store.find_wait_by_scope(waiter, "waiter", SCOPE) == wait_key
            assert await store.list_waits_for_user(waiter, "waiter") == [wait_key]
            assert store.session_key_for(waiter, "waiter", "wait-1") == wait_key
            # The copied keys work with the store's calls: untagged ones in two ordered steps.
            mapped = source.keys["mapped"]
            await store.update_session(mapped, make_data(ctx_of("mapped"), state='{"v":2}'))
            # A touch of the user-less session refreshes its creator's pointer, which only the
            # meta value names: proof that the copy rewrote it into the cluster form.
            creator = cluster_keys.user(UserSlot("prod", "acme", "support", "creator"))
            shorten = cluster_client(redis_cluster)
            try:
                shorten.pexpire(creator, 10_000)
                await store.touch_session(source.keys["userless"])
                assert close(int(IDLE * 1000), int(shorten.pttl(creator)))
            finally:
                shorten.close()
            await store.remove_session(source.keys["timed-1"])
            assert await store.find_by_user(ctx_of("timed-1"), "timed-1") is None
            await store.clear_wait(waiter, "waiter", SCOPE)
            assert await store.list_waits_for_user(waiter, "waiter") == []

    asyncio.run(check())


def test_a_second_copy_writes_nothing_and_reports_what_is_there(
    redis_url: str, redis_cluster: LocalCluster, source: Seeded, cluster_ns: str
) -> None:
    """Run twice, the second copy finds every session already there; a session changed in the
    cluster since is a conflict, left as it is (exit 1), and a taken pointer is left too."""
    assert copy(redis_url, cluster_ns, redis_cluster, "--yes").code == 0
    again = copy(redis_url, cluster_ns, redis_cluster, "--yes")
    assert again.code == 0, again.err
    assert again.json["copied"] == 0
    assert again.json["already_there"] == len(source.keys)
    assert again.json["pointers"] == {
        "copied": 0,
        "already_there": len(source.pointed),
        "taken": 0,
    }

    async def change_in_cluster() -> None:
        store = RedisSessionStore.from_cluster(redis_cluster.startup_urls, namespace=cluster_ns)
        async with store:
            data = make_data(ctx_of("plain-0"), state='{"changed":true}')
            await store.update_session(source.keys["plain-0"], data)
            await store.create_session(ctx_of("plain-1"), make_data(ctx_of("plain-1")))

    asyncio.run(change_in_cluster())
    raw = cluster_client(redis_cluster)
    try:
        changed_key = RedisKeys(cluster_ns, cluster=True).session(source.keys["plain-0"])
        changed = raw.get(changed_key)
        third = copy(redis_url, cluster_ns, redis_cluster, "--yes")
        assert third.code == 1
        assert third.json["conflicts"] == [
            f"{source.keys['plain-0']}: the cluster holds other data"
        ]
        assert third.json["pointers"]["taken"] == 1  # plain-1 has a newer session there
        assert raw.get(changed_key) == changed
    finally:
        raw.close()


def test_a_dry_run_writes_nothing(
    redis_url: str,
    redis_cluster: LocalCluster,
    source: Seeded,
    cluster_ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --yes the cluster is checked and left untouched, and the report (also as a table,
    the nodes taken from the environment) says what --yes would copy."""
    run = copy(redis_url, cluster_ns, redis_cluster)
    assert run.code == 0, run.err
    assert run.json["dry_run"] is True
    assert run.json["copied"] == len(source.keys)
    assert run.json["pointers"]["copied"] == len(source.pointed)
    out, err = io.StringIO(), io.StringIO()
    masters = ",".join(f"redis://127.0.0.1:{port}/0" for port in redis_cluster.master_ports())
    monkeypatch.setenv("GREENTIC_SESSION_CLUSTER_URLS", masters)
    argv = ["--url", redis_url, "--namespace", cluster_ns, "copy-to-cluster"]
    assert main(argv, stdout=out, stderr=err) == 0
    wait_key = RedisKeys(cluster_ns, cluster=True).tagged_key(
        UserSlot("prod", "acme", "support", "waiter"), "wait-1"
    )
    assert f"re-keyed wait: wait-1 -> {wait_key}" in out.getvalue()
    assert "dry run: nothing was written; run again with --yes" in out.getvalue()
    assert keys_on_masters(redis_cluster, cluster_ns) == []


def test_another_cluster_namespace_and_a_skipped_wait(
    redis_url: str, redis_cluster: LocalCluster, namespace: str
) -> None:
    """--to-namespace writes under another namespace; a wait whose wait keys belong to another
    user than its data is skipped and reported (exit 1), the rest copied."""
    other = f"copy-{uuid.uuid4().hex[:12]}:session"

    async def seed_odd() -> str:
        store = RedisSessionStore.from_url(redis_url, namespace=namespace)
        async with store:
            key = await store.create_session(ctx_of("odd"), make_data(ctx_of("odd")))
        client = sync_redis.Redis.from_url(redis_url)
        try:  # a wait SET of another user naming this session (no writer of ours makes one)
            client.sadd(f"{namespace}:waits:user:prod:acme:support:someone-else", key)
        finally:
            client.close()
        return key

    odd = asyncio.run(seed_odd())
    try:
        run = copy(redis_url, namespace, redis_cluster, "--to-namespace", other, "--yes")
        assert run.code == 1
        assert run.json["copied"] == 0
        assert run.json["skipped"] == [f"{odd}: a wait key of this session belongs to another user"]
        assert keys_on_masters(redis_cluster, other) == []
        assert keys_on_masters(redis_cluster, namespace) == []
    finally:
        asyncio.run(drop_namespace(redis_url, namespace))


def test_an_unreachable_cluster_fails_before_anything_is_read(
    redis_url: str, source: Seeded, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that cannot be reached exits 3 with one line naming no secret; no cluster URLs
    at all is a usage error."""
    monkeypatch.delenv("GREENTIC_SESSION_CLUSTER_URLS", raising=False)
    out, err = io.StringIO(), io.StringIO()
    argv = ["--url", redis_url, "--namespace", namespace, "--timeout", "0.5", "copy-to-cluster"]
    code = main([*argv, "--to", "redis://:s3cret@127.0.0.1:1/0"], stdout=out, stderr=err)
    assert code == 3
    assert "s3cret" not in err.getvalue()
    assert err.getvalue().startswith("greentic-session: ")
    code = main(argv, stdout=out, stderr=err)
    assert code == 2
    assert "no cluster URLs" in err.getvalue()
