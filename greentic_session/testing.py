"""Test support: a private, throwaway `redis-server` on a free loopback port, and a Sentinel
topology (`SentinelCluster`: a primary, a replica and three sentinels) built from such servers.

Used by this project's tests and benchmarks, and by applications that want the same. It never
touches a server it did not start. A server's readiness is signalled by its own
"Ready to accept connections" log line, not by polling; a Sentinel topology's (replication up,
every sentinel seeing the replica and its peers) is polled, with a deadline.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Self, Unpack

from .config import SessionBackendConfig, create_session_store
from .store import SessionStore, StoreOptions

__all__ = [
    "BACKENDS",
    "Backend",
    "RedisServer",
    "SentinelCluster",
    "TLSFiles",
    "find_redis_server",
    "free_port",
]

_READY = "Ready to accept connections"


def find_redis_server() -> str | None:
    """`$REDIS_SERVER`, else `redis-server` on PATH, else None."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    return shutil.which("redis-server")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths for a TLS listener: server cert and key, and the CA clients should trust."""

    cert: str
    key: str
    ca: str


class RedisServer:
    """A `redis-server` child process; `start()`/`stop()`/`restart()` keep the same port."""

    _ready_line = _READY

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        tls: TLSFiles | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH and $REDIS_SERVER is unset")
        self.binary = found
        self.port = port or free_port()
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._dir = tempfile.TemporaryDirectory(prefix="greentic-redis-")
        self._proc: subprocess.Popen[str] | None = None
        self._log: list[str] = []
        self._drainer: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log(self) -> str:
        return "".join(self._log)

    def _args(self) -> list[str]:
        args = [*self._leading_args(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir.name, "--logfile", "", "--daemonize", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key]
            args += ["--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        return args + list(self.extra_args)

    def start(self) -> Self:
        if self._proc is not None and self._proc.poll() is None:
            return self
        ready = threading.Event()
        proc = subprocess.Popen(
            self._args(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        self._log = []
        # Drain the log for the server's whole life so a full pipe can never block it.
        self._drainer = threading.Thread(target=self._drain, args=(proc.stdout, ready), daemon=True)
        self._drainer.start()
        self._proc = proc
        if not ready.wait(self.startup_timeout) or proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log}")
        return self

    def _drain(self, stream: IO[str], ready: threading.Event) -> None:
        with stream:
            for line in stream:
                self._log.append(line)
                if self._ready_line in line:
                    ready.set()
        ready.set()  # the process ended; start() sees poll() is not None

    def stop(self) -> None:
        """Stop the server (SIGKILL: no shutdown save, like a crash)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._drainer is not None:
            self._drainer.join()  # the log pipe hits EOF once the process is gone
            self._drainer = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self._proc is not None})"

    def _leading_args(self) -> list[str]:
        return [self.binary]


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
            state = self._query(sentinel.port, "SENTINEL", "MASTER", self.service_name)
            replicas = self._query(sentinel.port, "SENTINEL", "REPLICAS", self.service_name)
            assert isinstance(state, dict)
            assert isinstance(replicas, list)
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


@dataclass(frozen=True)
class Backend:
    """One row of the backend table that drives the conformance suite and the benchmarks."""

    id: str
    needs_redis: bool
    batching: bool = True  # Redis: calls auto-pipelined on shared connections (the default)
    via_sentinel: bool = False  # `redis_url` is then a redis+sentinel:// URL (never batched)
    via_cluster: bool = False  # `redis_url` is then the cluster's node URLs, comma-separated

    def open(
        self,
        *,
        redis_url: str | None = None,
        namespace: str,
        clock: Callable[[], float] | None = None,
        **store: Unpack[StoreOptions],
    ) -> SessionStore:
        """A fresh store of this kind with `store` options; Redis stores live under their own
        `namespace`; `clock` drives the in-memory store's expiry (Redis uses its own clock)."""
        if not self.needs_redis:
            if clock is not None:
                from .backends.memory import InMemorySessionStore

                return InMemorySessionStore(clock=clock, **store)
            return create_session_store(SessionBackendConfig.in_memory(**store))
        if redis_url is None:
            raise ValueError(f"backend {self.id!r} needs a redis_url")
        if self.via_sentinel:
            config = SessionBackendConfig.redis_url(redis_url, namespace=namespace, **store)
        elif self.via_cluster:
            config = SessionBackendConfig.redis_cluster(
                redis_url.split(","), namespace=namespace, batching=self.batching, **store
            )
        else:
            config = SessionBackendConfig.redis_url(
                redis_url, namespace=namespace, batching=self.batching, **store
            )
        return create_session_store(config)


BACKENDS: tuple[Backend, ...] = (
    Backend("memory", needs_redis=False),
    Backend("redis", needs_redis=True),  # batched, the default
    Backend("redis-unbatched", needs_redis=True, batching=False),  # redis-py's pool
    Backend("sentinel", needs_redis=True, batching=False, via_sentinel=True),
    Backend("cluster", needs_redis=True, via_cluster=True),  # 3 masters, batched per master
)
