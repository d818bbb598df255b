"""The configuration model: one options base for every Redis topology, the keyword options of
every Redis constructor spelled once, the `redis+cluster://` URL form, and configs that cannot
hold a combination no store accepts. No server needed."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from greentic_session import Encryption, InvalidInputError, SessionBackendConfig, StoreOptions
from greentic_session.backends.redis.options import (
    PoolOptions,
    RedisClusterOptions,
    RedisOptions,
    RedisPoolOptions,
    RedisSentinelOptions,
    RedisStoreOptions,
)

PASSWORD = "clu5ter-Pa55-7f3e"


def test_every_options_kind_extends_the_pool_options_and_shares_their_defaults() -> None:
    """Single-node, Sentinel and cluster options are PoolOptions with the same defaults (but
    Sentinel's batching, which is off), and RedisPoolOptions names exactly the pool fields."""
    single = RedisOptions(url="redis://h:6379/0")
    sentinel = RedisSentinelOptions(sentinels=(("h", 26379),), service_name="svc")
    cluster = RedisClusterOptions(("redis://h:7000",))
    pool_fields = {f.name for f in dataclasses.fields(PoolOptions)} - {"namespace"}
    assert set(RedisPoolOptions.__annotations__) == pool_fields
    for options in (single, sentinel, cluster):
        assert isinstance(options, PoolOptions)
        shared = {name: getattr(options, name) for name in pool_fields - {"batching"}}
        assert shared == {name: getattr(single, name) for name in pool_fields - {"batching"}}
        assert options.namespace == PoolOptions().namespace
    assert (single.batching, sentinel.batching, cluster.batching) == (True, False, True)
    assert cluster.pool_options() == single.pool_options()


def test_redis_store_options_are_namespace_pool_and_store_options() -> None:
    """The keyword options of every Redis constructor are the namespace, the pool's and the
    StoreOptions every backend takes, each name once."""
    names = typing.get_type_hints(RedisStoreOptions)
    expected = {"namespace", *RedisPoolOptions.__annotations__, *StoreOptions.__annotations__}
    assert set(names) == expected


def test_a_memory_config_refuses_redis_options_at_once() -> None:
    """kind="memory" with Redis options, or with a Redis option among its store options, raises
    InvalidInputError when the config is built, not when the store is."""
    with pytest.raises(InvalidInputError, match="takes no Redis options"):
        SessionBackendConfig("memory", RedisOptions(url="redis://h:6379/0"))
    with pytest.raises(InvalidInputError, match="'max_connections': not a store option"):
        SessionBackendConfig.in_memory(max_connections=8)  # type: ignore[call-arg]
    with pytest.raises(InvalidInputError, match="'namespace': not a store option"):
        SessionBackendConfig("memory", store={"namespace": "app"})  # type: ignore[typeddict-unknown-key]


def test_a_redis_config_needs_redis_options() -> None:
    """kind="redis" without Redis options, or an unknown kind, is a TypeError when built."""
    with pytest.raises(TypeError, match="needs RedisOptions"):
        SessionBackendConfig("redis", store={"idle_ttl": 5})
    with pytest.raises(TypeError, match="unsupported session backend kind"):
        SessionBackendConfig("mongo")  # type: ignore[arg-type]


def test_store_options_and_unknown_options_are_sorted_out() -> None:
    """redis_url hands idle_ttl, max_lifetime and max_blob_bytes to the store and the rest to
    the options; a misspelled option is a TypeError."""
    config = SessionBackendConfig.redis_url(
        "redis://h:6379/0", namespace="app", max_connections=8, idle_ttl=30, max_blob_bytes=1024
    )
    assert config.store == {"idle_ttl": 30, "max_blob_bytes": 1024}
    assert isinstance(config.redis, RedisOptions)
    assert (config.redis.namespace, config.redis.max_connections) == ("app", 8)
    with pytest.raises(TypeError):
        SessionBackendConfig.redis_url("redis://h:6379/0", idle_tll=30)  # type: ignore[call-arg]


def test_sealing_options_are_store_options_checked_when_the_config_is_built() -> None:
    """encryption and compression go to the store on every config kind; a wrong type or an
    unknown compression is InvalidInputError at once, and the config's repr shows key ids only."""
    ring = Encryption({"k1": bytes(range(32))}, "k1")
    for config in (
        SessionBackendConfig.in_memory(encryption=ring, compression="zstd"),
        SessionBackendConfig.redis_url("redis://h:6379/0", encryption=ring, compression="zstd"),
        SessionBackendConfig.redis_cluster(["redis://h:7000"], encryption=ring),
        SessionBackendConfig.redis_sentinel(["redis://s:26379"], "main", compression="zstd"),
    ):
        assert set(config.store) <= {"encryption", "compression"}
        assert bytes(range(32)).hex() not in repr(config)
        assert "'k1'" in repr(config) or "encryption" not in config.store
    with pytest.raises(InvalidInputError, match="encryption must be an Encryption"):
        SessionBackendConfig.in_memory(encryption=bytes(32))  # type: ignore[typeddict-item]
    with pytest.raises(InvalidInputError, match="compression must be one of"):
        SessionBackendConfig.redis_url("redis://h", compression="gzip")  # type: ignore[typeddict-item]


def test_a_cluster_url_names_the_same_cluster_as_its_startup_urls() -> None:
    """`redis+cluster://user:pass@h1:port,h2:port/0?query` builds the options the equivalent
    startup URLs build; `rediss+cluster://` means TLS; the repr hides the password."""
    by_url = SessionBackendConfig.redis_url(
        f"redis+cluster://app:{PASSWORD}@h1:7000,[::1]:7001/0?socket_timeout=1",
        max_connections=8,
    )
    by_list = SessionBackendConfig.redis_cluster(
        [
            f"redis://app:{PASSWORD}@h1:7000/0?socket_timeout=1",
            f"redis://app:{PASSWORD}@[::1]:7001/0?socket_timeout=1",
        ],
        max_connections=8,
    )
    assert by_url == by_list
    assert isinstance(by_url.redis, RedisClusterOptions)
    assert by_url.redis.startup_nodes == (("h1", 7000), ("::1", 7001))
    assert by_url.redis.address == "redis+cluster://h1:7000,[::1]:7001"
    assert PASSWORD not in repr(by_url)
    tls = RedisClusterOptions.from_url("rediss+cluster://h1:7000", tls_ca_file="/ca.pem")
    assert tls.startup_urls == ("rediss://h1:7000",)
    assert tls.tls_ca_file == "/ca.pem"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+cluster://", "no cluster host"),
        ("redis+cluster://h1", "expected host:port"),
        ("redis+cluster://h1:7000,h2", "cluster host #2"),
        ("redis+cluster://h1:99999", "port"),
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://h1:7000?bogus=1", "query option #1"),
        (f"redis+cluster://:pa/ss{PASSWORD}@h1:7000", "percent-encode"),
        (f"redis+cluster://:{PASSWORD}@h1:7000#x", "unexpected '#'"),
    ],
)
def test_bad_cluster_url_names_the_wrong_part_and_no_secret(url: str, names: str) -> None:
    """A malformed cluster URL raises InvalidInputError naming the part, never the password."""
    with pytest.raises(InvalidInputError) as caught:
        SessionBackendConfig.redis_url(url)
    assert names in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "pa/ss" not in str(caught.value)


def test_options_built_by_hand_with_a_cluster_url_point_at_the_cluster_options() -> None:
    """RedisOptions given a redis+cluster:// URL names RedisClusterOptions.from_url."""
    with pytest.raises(InvalidInputError, match="RedisClusterOptions"):
        RedisOptions(url="redis+cluster://h1:7000")


def test_a_startup_url_without_a_port_is_refused() -> None:
    """A cluster startup URL must name its node's port: InvalidInputError when built (it was an
    AssertionError at the first repr or connection)."""
    with pytest.raises(InvalidInputError, match="a cluster node needs a host and port"):
        SessionBackendConfig.redis_cluster(["redis://node-1:7000", "redis://node-2"])
