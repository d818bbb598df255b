"""The Redis Cluster launcher (`LocalCluster`): slots spread, migrated, failed over and taken over.

Real redis-server processes in cluster mode on loopback, driven through redis-py's own cluster
client, so each drill is checked the way a cluster client sees it. The shared `redis_cluster` is
only read; the tests that move slots or fail over start their own clusters.
"""

from __future__ import annotations

import itertools
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from greentic_session.testing import LocalCluster

SLOTS = 16384
THIRD = SLOTS // 3  # the first master serves slots 0..THIRD-1, the last THIRD*2+1..16383


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    nodes = [ClusterNode("127.0.0.1", int(url.rpartition(":")[2])) for url in cluster.startup_urls]
    return RedisCluster(startup_nodes=nodes, decode_responses=True)


def tags_in(first: int, last: int, count: int) -> list[str]:
    """`count` hash tags of distinct slots within `first..last`."""
    tags: dict[int, str] = {}
    for number in itertools.count():
        tag = f"t{number}"
        slot = LocalCluster.slot_of(tag)
        if first <= slot <= last:
            tags.setdefault(slot, tag)
            if len(tags) == count:
                return list(tags.values())
    raise AssertionError("unreachable")


def keys_in_slot(port: int, slot: int) -> int:
    with redis.Redis(port=port) as client:
        return int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


def slot_map(port: int) -> list[tuple[int, int, int]]:
    """(first, last, master port) of every range, per `CLUSTER SLOTS` of the node on `port`."""
    with redis.Redis(port=port) as client:
        reply = client.execute_command("CLUSTER", "SLOTS")
    return sorted((int(first), int(last), int(master[1])) for first, last, master, *_ in reply)


@pytest.fixture(scope="module")
def drill_cluster(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """Three masters (no replicas, appendonly) for the drills these tests run on it, each on
    its own slots, leaving it converged."""
    _ = redis_cluster  # skips like the other Redis tests when no redis-server exists
    with LocalCluster(masters=3, appendonly=True) as cluster:
        yield cluster


def test_the_slots_are_spread_evenly_over_three_masters(redis_cluster: LocalCluster) -> None:
    """Three masters serve a third of the slots each, every master reports the same map, and a
    key written through a cluster client lands on `owner_of_slot(slot_of(key))`."""
    masters = redis_cluster.master_ports()
    assert len(masters) == 3
    assert redis_cluster.replica_ports() == []
    assert redis_cluster.startup_urls == [f"redis://127.0.0.1:{port}" for port in masters]
    expected = [(0, 5460, masters[0]), (5461, 10921, masters[1]), (10922, 16383, masters[2])]
    assert all(slot_map(port) == expected for port in masters)
    keys = [f"launcher-{uuid.uuid4().hex}-{n}" for n in range(30)]
    with cluster_client(redis_cluster) as client:
        for key in keys:
            client.set(key, "1")
        try:
            for key in keys:
                owner = redis_cluster.owner_of_slot(redis_cluster.slot_of(key))
                with redis.Redis(port=owner) as node:
                    assert node.exists(key) == 1
        finally:
            for key in keys:
                client.delete(key)
    assert redis_cluster.converged(), redis_cluster.unsettled


@pytest.mark.slow
def test_migrate_slots_moves_the_keys_written_during_the_move(drill_cluster: LocalCluster) -> None:
    """`migrate_slots` moves 50 slots while a client keeps adding keys to them and incrementing
    one key per slot: afterwards every master names the destination as their owner, the
    destination holds every acknowledged write and the source none of their keys."""
    cluster = drill_cluster
    src = cluster.owner_of_slot(0)
    dst = next(port for port in cluster.master_ports() if port != src)
    tags = tags_in(0, THIRD - 1, 50)
    slots = [cluster.slot_of(tag) for tag in tags]
    rounds = 0  # complete rounds: one new key per slot, then one INCR per slot
    writing, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        nonlocal rounds
        try:
            with cluster_client(cluster) as client:
                while not stop.is_set():
                    for tag in tags:
                        client.set(f"{{{tag}}}:{rounds}", str(rounds))
                        client.incr(f"{{{tag}}}:count")
                    rounds += 1
                    writing.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(10)
        before = rounds
        cluster.migrate_slots(slots, src, dst, batch=3)
        during = rounds - before
    finally:
        stop.set()
        writer.join(10)
    assert not errors, errors
    assert during > 0  # writes ran while the slots moved
    for port in cluster.master_ports():
        assert {cluster.owner_of_slot(slot, ask=port) for slot in slots} == {dst}
    for slot in slots:
        assert keys_in_slot(src, slot) == 0
        assert keys_in_slot(dst, slot) == rounds + 1  # the round keys and the counter
    with cluster_client(cluster) as client:
        for tag in tags:
            assert client.get(f"{{{tag}}}:count") == str(rounds)
            values = client.mget([f"{{{tag}}}:{n}" for n in range(rounds)])
            assert values == [str(n) for n in range(rounds)]
    cluster.wait_converged(10)


@pytest.mark.slow
def test_a_half_moved_slot_serves_every_key_then_finishes(drill_cluster: LocalCluster) -> None:
    """With a slot half-moved (`begin_migration`, then `migrate_keys` of half its keys) a cluster
    client reads every key, a multi-key command over both halves gets TRYAGAIN, and a new key
    lands on the destination; `finish_migration` moves the rest and hands the slot over."""
    cluster = drill_cluster
    src = cluster.owner_of_slot(SLOTS - 1)
    dst = next(port for port in cluster.master_ports() if port != src)
    (tag,) = tags_in(2 * THIRD + 1, SLOTS - 1, 1)
    slot = cluster.slot_of(tag)
    keys = [f"{{{tag}}}:{n}" for n in range(10)]
    with cluster_client(cluster) as client:
        for n, key in enumerate(keys):
            client.set(key, str(n))
        cluster.begin_migration(slot, src, dst)
        cluster.migrate_keys(src, dst, keys[:5])
        assert (keys_in_slot(src, slot), keys_in_slot(dst, slot)) == (5, 5)
        assert [client.get(key) for key in keys] == [str(n) for n in range(10)]  # ASK: 5 moved
        with redis.Redis(port=src) as node, pytest.raises(redis.exceptions.TryAgainError):
            node.mget(keys)  # a multi-key command over keys split between the two nodes
        client.set(f"{{{tag}}}:new", "x")
        assert (keys_in_slot(src, slot), keys_in_slot(dst, slot)) == (5, 6)
        assert cluster.owner_of_slot(slot) == src
        cluster.finish_migration(slot, src, dst)
        assert (keys_in_slot(src, slot), keys_in_slot(dst, slot)) == (0, 11)
        assert {cluster.owner_of_slot(slot, ask=port) for port in cluster.master_ports()} == {dst}
        assert client.mget([*keys, f"{{{tag}}}:new"]) == [*(str(n) for n in range(10)), "x"]


@pytest.mark.slow
def test_a_killed_master_without_replica_comes_back_with_its_keys(
    drill_cluster: LocalCluster,
) -> None:
    """A master with no replica is not replaced (`wait_for_promotion` says so at once); with
    `appendonly` (fsync always) `restart` brings it back with every acknowledged write."""
    cluster = drill_cluster
    victim = cluster.owner_of_slot(SLOTS // 2)
    keys = [f"{{{tag}}}:k" for tag in tags_in(THIRD + 1, 2 * THIRD - 1, 20)]
    assert {cluster.owner_of_slot(cluster.slot_of(key)) for key in keys} == {victim}
    with cluster_client(cluster) as client:
        for key in keys:
            client.set(key, key)
    before = cluster.keys_on(victim)
    cluster.kill_master(victim)
    with pytest.raises(RuntimeError, match="had no replica"):
        cluster.wait_for_promotion(victim)
    cluster.restart(victim)
    assert cluster.keys_on(victim) == before
    assert victim in cluster.master_ports()
    with cluster_client(cluster) as client:
        assert [client.get(key) for key in keys] == keys


@pytest.mark.slow
def test_manual_failover_promotes_the_replica_with_the_keys(redis_cluster: LocalCluster) -> None:
    """`manual_failover` makes a master's replica the master of its slots, holding every key
    the old master had, and the old master its replica."""
    _ = redis_cluster  # skips like the other Redis tests when no redis-server exists
    with LocalCluster(masters=3, replicas=1) as cluster:
        assert (len(cluster.master_ports()), len(cluster.replica_ports())) == (3, 3)
        old = cluster.owner_of_slot(0)
        (replica,) = cluster.replicas_of(old)
        keys = [f"{{{tag}}}:k" for tag in tags_in(0, THIRD - 1, 20)]
        with cluster_client(cluster) as client:
            for key in keys:
                client.set(key, key)
        assert cluster.manual_failover(old) == replica
        assert cluster.replicas_of(replica) == [old]
        assert old in cluster.replica_ports()
        assert {cluster.owner_of_slot(0, ask=port) for port in cluster.master_ports()} == {replica}
        assert cluster.keys_on(replica) == len(keys)
        with cluster_client(cluster) as client:
            assert [client.get(key) for key in keys] == keys


@pytest.mark.slow
def test_a_killed_masters_replica_is_promoted(redis_cluster: LocalCluster) -> None:
    """After `kill_master` (SIGKILL) the master's replica is promoted, holding every write the
    master had replicated, and the killed node `restart`s as the new master's replica."""
    _ = redis_cluster  # skips like the other Redis tests when no redis-server exists
    with LocalCluster(masters=3, replicas=1, node_timeout_ms=500) as cluster:
        old = cluster.owner_of_slot(0)
        (replica,) = cluster.replicas_of(old)
        keys = [f"{{{tag}}}:k" for tag in tags_in(0, THIRD - 1, 20)]
        with cluster_client(cluster) as client:
            for key in keys:
                client.set(key, key)
        with redis.Redis(port=old) as node:
            assert node.execute_command("WAIT", 1, 5000) == 1  # the replica has every write
        cluster.kill_master(old)
        assert cluster.wait_for_promotion(old, timeout=20) == replica
        assert old not in cluster.master_ports() + cluster.replica_ports()
        assert f"redis://127.0.0.1:{old}" not in cluster.startup_urls
        with cluster_client(cluster) as client:
            assert [client.get(key) for key in keys] == keys
        cluster.restart(old)
        assert cluster.replicas_of(replica) == [old]


def test_a_failed_start_stops_every_node(redis_cluster: LocalCluster) -> None:
    """A start that fails midway (here past its deadline: a new master reports
    `cluster_state:ok` no sooner than 2 s after it started) stops every node and frees their
    ports."""
    _ = redis_cluster  # skips like the other Redis tests when no redis-server exists
    cluster = LocalCluster(masters=3, startup_timeout=0.5)
    with pytest.raises(RuntimeError, match="timed out waiting for the"):
        cluster.start()
    assert all(node.pid is None for node in cluster.nodes)
    for node in cluster.nodes:
        with socket.socket() as sock:  # no listener left (connections may linger in TIME_WAIT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", node.port))
