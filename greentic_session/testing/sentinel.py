"""Sentinel for tests: a primary, a replica and three sentinels, all private servers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from .server import RedisServer, TLSFiles


class _SentinelServer(RedisServer):
    """`redis-server <config> --sentinel`: Sentinel rewrites its config file, so each has one."""

    _ready_line = "+monitor master"  # a sentinel never logs "Ready to accept connections"

    def __init__(self, config: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config_path = os.path.join(self._dir.name, "sentinel.conf")
        with open(self.config_path, "w", encoding="utf-8") as file:
            file.write(config)

    def _leading_args(self) -> list[str]:
        return [self.binary, self.config_path, "--sentinel"]

    def _args(self) -> list[str]:
        # The data-server flags (--save, --appendonly) are not sentinel options; the TLS files
        # are in the config file.
        ports = ["--port", "0", "--tls-port"] if self.tls else ["--port"]
        return [*self._leading_args(), "--bind", "127.0.0.1", *ports, str(self.port)]


def _fields(reply: object) -> dict[str, str]:
    """A Sentinel MASTER or REPLICAS entry as a dict: redis-py 8 parses these replies, older
    releases hand back the server's flat [field, value, ...] list."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _wait_until(
    check: Callable[[], bool], deadline: float, what: str, cluster: SentinelCluster | None = None
) -> None:
    """Poll `check` until it holds; RuntimeError naming `what` (and why the cluster is not
    settled) at `deadline` (monotonic)."""
    while not check():
        if time.monotonic() > deadline:
            why = f": {cluster.unsettled}" if cluster is not None else ""
            raise RuntimeError(f"timed out waiting for {what}{why}")
        time.sleep(0.05)


class SentinelCluster:
    """A primary, one replica and three sentinels on loopback, monitoring `service_name`.

    `down_after_ms` and `failover_timeout_ms` are short so a failover takes a second or two.
    Sentinels are polled (`SENTINEL` commands, with redis-py) until the topology is usable:
    replication up, each sentinel knowing the replica and its two peers. `password` protects the
    data nodes, `sentinel_password` the sentinels; with `tls` every listener and the replication
    link use TLS only.
    """

    def __init__(
        self,
        *,
        service_name: str = "sessions",
        binary: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        startup_timeout: float = 30.0,
        data_args: Sequence[str] = (),
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: TLSFiles | None = None,
        await_peers: bool = True,
    ) -> None:
        """`data_args` are extra `redis-server` flags for the primary and the replica. Without
        `await_peers`, `start()` does not wait for the sentinels to find each other (about 2 s,
        their hello period), which only an automatic failover's vote needs."""
        self.service_name = service_name
        self.startup_timeout = startup_timeout
        self.unsettled: str | None = "not started"  # why `settled()` last said no
        self.await_peers = await_peers
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls
        # Full syncs start at once (the diskless default waits 5 s for more replicas to join).
        node_args = ["--repl-diskless-sync-delay", "0", *data_args]
        if password is not None:
            node_args += ["--requirepass", password, "--masterauth", password]
        if tls is not None:
            node_args += ["--tls-replication", "yes"]
        self.primary = RedisServer(binary=binary, tls=tls, extra_args=node_args)
        self.replica = RedisServer(
            binary=binary,
            tls=tls,
            extra_args=[*node_args, "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        config = (
            f"sentinel monitor {service_name} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {service_name} {down_after_ms}\n"
            f"sentinel failover-timeout {service_name} {failover_timeout_ms}\n"
        )
        if password is not None:
            config += f"sentinel auth-pass {service_name} {password}\n"
        if sentinel_password is not None:
            config += (
                f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
            )
        if tls is not None:
            config += (
                f"tls-cert-file {tls.cert}\ntls-key-file {tls.key}\ntls-ca-cert-file {tls.ca}\n"
                "tls-auth-clients no\ntls-replication yes\n"
            )
        self.sentinels = [_SentinelServer(config, binary=binary, tls=tls) for _ in range(3)]

    @property
    def sentinel_urls(self) -> list[str]:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.sentinel_password}@" if self.sentinel_password else ""
        return [f"{scheme}://{auth}127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        """The topology as a `redis+sentinel://` URL, credentials included."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f":{self.sentinel_password}@" if self.sentinel_password else ""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        query = f"?password={self.password}" if self.password else ""
        return f"{scheme}://{auth}{hosts}/{self.service_name}/0{query}"

    def start(self) -> Self:
        deadline = time.monotonic() + self.startup_timeout
        try:
            self.primary.start()
            self.replica.start()
            # Sentinels learn replicas from the primary's INFO, which they poll only every 10 s:
            # start them once the replica is attached, so their first INFO lists it.
            _wait_until(self._replication_up, deadline, "the replica to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            _wait_until(self.settled, deadline, "the sentinels to see the topology", self)
        except BaseException:
            self.close()
            raise
        return self

    def _query(self, port: int, *command: str) -> object:
        import redis

        sentinel = any(port == server.port for server in self.sentinels)
        password = self.sentinel_password if sentinel else self.password
        with redis.Redis(
            port=port,
            password=password,
            socket_timeout=2,
            decode_responses=True,
            ssl=self.tls is not None,
            ssl_ca_certs=None if self.tls is None else self.tls.ca,
        ) as client:
            return client.execute_command(*command)

    def _replication_up(self) -> bool:
        info = self._query(self.replica.port, "INFO", "replication")
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    def primary_port(self, sentinel: int = 0) -> int:
        """The primary's port as sentinel number `sentinel` reports it."""
        reply = self._query(
            self.sentinels[sentinel].port,
            "SENTINEL",
            "GET-MASTER-ADDR-BY-NAME",
            self.service_name,
        )
        assert isinstance(reply, list | tuple)
        return int(reply[1])

    def role(self, port: int) -> str:
        """`master` or `slave`: what the data server on `port` says it is."""
        info = self._query(port, "INFO", "replication")
        assert isinstance(info, dict)
        return str(info["role"])

    def settled(self) -> bool:
        """Every sentinel agrees on the primary, knows its two peers (with `await_peers`) and
        sees a healthy replica, and primary and replica agree on their roles: ready for a
        (next) failover."""
        try:
            self.unsettled = self._unsettled()
        except Exception as exc:  # a server still starting or reconfiguring: not settled yet
            self.unsettled = f"a query failed: {exc!r}"
        return self.unsettled is None

    def _unsettled(self) -> str | None:
        """Why the topology is not settled yet, or None."""
        ports = {self.primary_port(number) for number in range(len(self.sentinels))}
        if len(ports) != 1:
            return f"the sentinels disagree on the primary: {sorted(ports)}"
        (primary,) = ports
        other = self.replica.port if primary == self.primary.port else self.primary.port
        if self.role(primary) != "master" or self.role(other) != "slave":
            return "the primary and the replica disagree with the sentinels on their roles"
        for number, sentinel in enumerate(self.sentinels):
            state = _fields(self._query(sentinel.port, "SENTINEL", "MASTER", self.service_name))
            listed = self._query(sentinel.port, "SENTINEL", "REPLICAS", self.service_name)
            assert isinstance(listed, list)
            replicas = [_fields(replica) for replica in listed]
            if self.await_peers and int(state["num-other-sentinels"]) != 2:
                return f"sentinel #{number} knows {state['num-other-sentinels']} peers, not 2"
            seen = [r for r in replicas if int(r["port"]) == other]
            if not seen or seen[0].get("master-link-status") != "ok" or "down" in seen[0]["flags"]:
                return f"sentinel #{number} does not see a healthy replica: {seen}"
        return None

    def wait_settled(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        _wait_until(self.settled, deadline, "the Sentinel topology to settle", self)

    def wait_for_new_primary(self, old_port: int, timeout: float) -> int:
        """The port of the primary sentinel #0 reports, once it is not `old_port`."""
        _wait_until(
            lambda: self.primary_port() != old_port,
            time.monotonic() + timeout,
            "Sentinel to promote the replica",
        )
        return self.primary_port()

    def demote(self, port: int, primary_port: int) -> None:
        """Make the server on `port` a replica of `primary_port`, as Sentinel does to an old
        primary once it notices it (up to ~10 s after a failover)."""
        self._query(port, "REPLICAOF", "127.0.0.1", str(primary_port))

    def failover(self) -> int:
        """Ask a sentinel to fail over (`SENTINEL FAILOVER`); returns the old primary's port."""
        old = self.primary_port()
        self._query(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.service_name)
        return old

    def close(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
