"""Test support: a private, throwaway `redis-server` on a free loopback port, and two topologies
built from such servers: Sentinel (`SentinelCluster`: a primary, a replica and three sentinels)
and Redis Cluster (`LocalCluster`: masters, their replicas, slot migrations and failovers).

Used by this project's tests and benchmarks, and by applications that want the same. It never
touches a server it did not start. A server's readiness is signalled by its own
"Ready to accept connections" log line, not by polling; a topology's (replication up, every
sentinel seeing the replica and its peers; every cluster node agreeing on the slot map) is
polled, with a deadline.
"""

from __future__ import annotations

import asyncio
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
from typing import IO, Any, Self, Unpack

from .config import SessionBackendConfig, create_session_store
from .store import SessionStore, StoreOptions

__all__ = [
    "BACKENDS",
    "LOOP_KINDS",
    "SERVER_KINDS",
    "Backend",
    "LocalCluster",
    "RedisServer",
    "SentinelCluster",
    "TLSFiles",
    "find_redis_server",
    "find_server",
    "free_port",
    "loop_factory",
]

_READY = "Ready to accept connections"


# The server engines the store is tested on: each speaks the same protocol and runs the same
# Lua, but words some refusals differently.
SERVER_KINDS: tuple[str, ...] = ("redis", "valkey")
_SERVER_BINARIES = {
    "redis": ("REDIS_SERVER", "redis-server"),
    "valkey": ("VALKEY_SERVER", "valkey-server"),
}

# The event loops the Redis store is tested on: asyncio's own and uvloop (what
# `uvicorn[standard]` runs).
LOOP_KINDS: tuple[str, ...] = ("asyncio", "uvloop")


def find_server(kind: str = "redis") -> str | None:
    """The binary of server engine `kind`: `$REDIS_SERVER` / `$VALKEY_SERVER` when set, else
    `redis-server` / `valkey-server` on PATH, else None."""
    variable, name = _SERVER_BINARIES[kind]
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    return shutil.which(name)


def find_redis_server() -> str | None:
    """`$REDIS_SERVER`, else `redis-server` on PATH, else None."""
    return find_server("redis")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-event-loop function for loop `kind` (`asyncio.Runner(loop_factory=...)`)."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown event loop {kind!r}; known: {', '.join(LOOP_KINDS)}")


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


# -- Redis Cluster ---------------------------------------------------------------------------------

_SLOTS = 16384  # Redis Cluster's hash slots
_UNHEALTHY = frozenset({"fail", "fail?", "handshake", "noaddr"})


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _parse_info(text: str) -> dict[str, str]:
    """`CLUSTER INFO`'s `field:value` lines."""
    fields = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {name: value for name, _, value in fields}


@dataclass(frozen=True)
class _NodeView:
    """One line of `CLUSTER NODES`: a node as the node asked sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: frozenset[int]  # the slots it owns (not the ones it is importing or migrating)

    @property
    def healthy(self) -> bool:
        return self.connected and not self.flags & _UNHEALTHY

    @property
    def is_master(self) -> bool:
        return "master" in self.flags


def _parse_nodes(text: str) -> list[_NodeView]:
    """`CLUSTER NODES`: `id ip:port@bus[,host] flags master ping pong epoch link slot...`."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].partition("@")[0]
        slots: set[int] = set()
        for spec in fields[8:]:
            if spec.startswith("["):  # `[slot->-id]` / `[slot-<-id]`: a migration in progress
                continue
            first, _, last = spec.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        views.append(
            _NodeView(
                id=fields[0],
                port=int(address.rpartition(":")[2] or 0),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                connected=fields[7] == "connected",
                slots=frozenset(slots),
            )
        )
    return views


class _Admin:
    """Sync redis-py clients to cluster nodes, one per port, opened on first use and closed
    together (a `with` block)."""

    def __init__(self) -> None:
        self._clients: dict[int, Any] = {}  # redis.Redis, whose execute_command is untyped

    def __call__(self, port: int, *command: object) -> Any:
        client = self._clients.get(port)
        if client is None:
            import redis

            # MIGRATE may take its own timeout (5 s) before replying.
            client = redis.Redis(
                host="127.0.0.1", port=port, socket_timeout=10, socket_connect_timeout=2
            )
            self._clients[port] = client
        return client.execute_command(*command)

    def text(self, port: int, *command: object) -> str:
        return _text(self(port, *command))

    def nodes(self, port: int) -> list[_NodeView]:
        """The cluster as the node on `port` sees it."""
        return _parse_nodes(self.text(port, "CLUSTER", "NODES"))

    def myself(self, port: int) -> _NodeView:
        """The node on `port` as it sees itself: its role, its master, its slots."""
        (me,) = (view for view in self.nodes(port) if "myself" in view.flags)
        return me

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LocalCluster:
    """A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every node a
    `redis-server --cluster-enabled yes` child process (`RedisServer`) with its own directory,
    port and cluster-bus port.

    `start()` spreads the 16384 slots evenly over the masters (`CLUSTER ADDSLOTSRANGE`), meets
    every node, attaches the replicas, then polls until converged: every running node reports
    `cluster_state:ok`, sees every other running node healthy and agrees on the slot map, and
    every replica's link is up. A master does not report `cluster_state:ok` sooner than 2 s after
    it started (Redis's writable delay), so a start takes a little over 2 s.

    Drills: `migrate_slots` (the real protocol, safe under writes; `begin_migration`,
    `migrate_keys` and `finish_migration` for a slot left half-moved), `manual_failover`,
    `kill_master` + `wait_for_promotion`, `restart`. Each blocks (sync redis-py, polling with a
    deadline): from async tests run them in a thread (`asyncio.to_thread`) so the clients under
    test keep running. `cluster-require-full-coverage` stays `yes`: while a killed master's slots
    are unserved (until its replica is promoted, or until `restart` when it has none) every node
    reports `cluster_state:fail` and refuses commands with CLUSTERDOWN. With `appendonly` each
    node fsyncs every write (`appendfsync always`), so an acknowledged write survives a SIGKILL
    and a `restart`; without it a restarted node comes back empty.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        appendonly: bool = False,
        node_timeout_ms: int = 1000,
        binary: str | None = None,
        node_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        """`node_args` are extra `redis-server` flags for every node."""
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replica count")
        self.masters = masters
        self.replicas = replicas
        self.appendonly = appendonly
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.unsettled: str | None = "not started"  # why `converged()` last said no
        count = masters * (1 + replicas)
        ports = _free_ports(2 * count)
        self._bus = dict(zip(ports[:count], ports[count:], strict=True))
        self.nodes: list[RedisServer] = []  # the masters, then the replicas of each in turn
        for port, bus in self._bus.items():
            args = ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
            # Relative to the node's own --dir.
            args += ["--cluster-config-file", f"nodes-{port}.conf"]
            args += ["--cluster-node-timeout", str(node_timeout_ms)]
            # Full syncs start at once (the diskless default waits 5 s for more replicas).
            args += ["--repl-diskless-sync-delay", "0"]
            if appendonly:
                args += ["--appendonly", "yes", "--appendfsync", "always"]
            self.nodes.append(RedisServer(binary=binary, port=port, extra_args=[*args, *node_args]))
        self._started_masters = [node.port for node in self.nodes[:masters]]
        self._replica_of = {
            node.port: self._started_masters[number // replicas]
            for number, node in enumerate(self.nodes[masters:])
        }
        self._ids: dict[int, str] = {}
        # kill_master's record of each killed master: its slots and its running replicas.
        self._killed: dict[int, tuple[frozenset[int], list[int]]] = {}

    # -- addresses and topology -----------------------------------------------------------------

    @property
    def startup_urls(self) -> list[str]:
        """`redis://127.0.0.1:PORT` of each node started as a master that is running (after a
        failover it may be a replica, still a node a cluster client can bootstrap from)."""
        return [
            f"redis://127.0.0.1:{port}" for port in self._started_masters if self._running(port)
        ]

    @property
    def url(self) -> str:
        """The first of `startup_urls`."""
        urls = self.startup_urls
        if not urls:
            raise RuntimeError("no node started as a master is running")
        return urls[0]

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on `port` (kept across restarts, in nodes.conf)."""
        self._node(port)
        return self._ids[port]

    def master_ports(self) -> list[int]:
        """The running nodes that say they are masters, in start order."""
        with _Admin() as admin:
            return [port for port in self._running_ports() if admin.myself(port).is_master]

    def replica_ports(self) -> list[int]:
        """The running nodes that say they are replicas, in start order."""
        with _Admin() as admin:
            return [port for port in self._running_ports() if not admin.myself(port).is_master]

    def replicas_of(self, master_port: int) -> list[int]:
        """The running nodes that say they replicate the node on `master_port`."""
        master_id = self.node_id(master_port)
        with _Admin() as admin:
            return self._replicas_of(admin, master_id)

    def owner_of_slot(self, slot: int, *, ask: int | None = None) -> int:
        """The port of the master serving `slot`, per `CLUSTER SLOTS` of the node on `ask` (by
        default the first running node)."""
        port = self._first_running() if ask is None else ask
        with _Admin() as admin:
            for first, last, master, *_ in admin(port, "CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return int(master[1])
        raise LookupError(f"node {port} knows no owner of slot {slot}")

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        """The hash slot of `key` (hash tags honoured)."""
        from redis.crc import key_slot

        return key_slot(key.encode() if isinstance(key, str) else key)

    def keys_on(self, port: int) -> int:
        """How many keys the node on `port` holds (`DBSIZE`)."""
        with _Admin() as admin:
            return int(admin(port, "DBSIZE"))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start every node, build the cluster and wait until it converged; on any failure
        every node is stopped and its directory removed."""
        deadline = time.monotonic() + self.startup_timeout
        try:
            for node in self.nodes:
                node.start()
            with _Admin() as admin:
                self._ids = {n.port: admin.text(n.port, "CLUSTER", "MYID") for n in self.nodes}
                for epoch, node in enumerate(self.nodes, start=1):  # distinct: no collisions
                    admin(node.port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                for number, port in enumerate(self._started_masters):
                    first = number * _SLOTS // self.masters
                    last = (number + 1) * _SLOTS // self.masters - 1
                    admin(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
                seed = self.nodes[0].port
                for node in self.nodes[1:]:
                    admin(seed, "CLUSTER", "MEET", "127.0.0.1", node.port, self._bus[node.port])
            self._await(self._unmet, deadline, "the nodes to meet")
            with _Admin() as admin:
                for replica, master in self._replica_of.items():
                    admin(replica, "CLUSTER", "REPLICATE", self._ids[master])
            self._await(self._unconverged, deadline, "the cluster to converge")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every node (SIGKILL) and remove its directory."""
        for node in self.nodes:
            node.close()

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
        ports = [node.port for node in self.nodes]
        running = len(self._running_ports())
        return (
            f"LocalCluster(masters={self.masters}, replicas={self.replicas}, ports={ports}, "
            f"running={running})"
        )

    # -- convergence ----------------------------------------------------------------------------

    def converged(self) -> bool:
        """Every running node reports `cluster_state:ok`, sees every other running node healthy
        and agrees on the slot map (`CLUSTER SLOTS`), and every running replica's link is up.
        Why not is kept in `unsettled`."""
        with _Admin() as admin:
            self.unsettled = self._why_not(self._unconverged, admin)
        return self.unsettled is None

    def wait_converged(self, timeout: float = 30.0) -> None:
        """Poll `converged()` until it holds; RuntimeError with the reason past `timeout` s."""
        self._await(self._unconverged, time.monotonic() + timeout, "the cluster to converge")

    def _unconverged(self, admin: _Admin) -> str | None:
        live = self._running_ports()
        if not live:
            return "no node is running"
        maps: dict[int, object] = {}
        for port in live:
            state = _parse_info(admin.text(port, "CLUSTER", "INFO")).get("cluster_state")
            if state != "ok":
                return f"node {port} reports cluster_state:{state}"
            views = {view.port: view for view in admin.nodes(port)}
            for other in live:
                seen = views.get(other)
                if seen is None or not seen.healthy:
                    how = "unknown" if seen is None else ",".join(sorted(seen.flags))
                    return f"node {port} sees node {other} as {how}"
            me = next(view for view in views.values() if "myself" in view.flags)
            if not me.is_master:
                link = admin(port, "INFO", "replication").get("master_link_status")
                if link != "up":
                    return f"replica {port} has master_link_status:{link}"
            maps[port] = self._slot_map(admin(port, "CLUSTER", "SLOTS"), live)
        first, *others = live
        for port in others:
            if maps[port] != maps[first]:
                return f"nodes {first} and {port} disagree on the slot map"
        return None

    @staticmethod
    def _slot_map(reply: Any, live: list[int]) -> tuple[tuple[int, int, int, tuple[int, ...]], ...]:
        """`CLUSTER SLOTS` as (first, last, master port, running replica ports), sorted."""
        ranges = []
        for first, last, master, *replicas in reply:
            followers = tuple(sorted(p for p in (int(r[1]) for r in replicas) if p in live))
            ranges.append((int(first), int(last), int(master[1]), followers))
        return tuple(sorted(ranges))

    def _unmet(self, admin: _Admin) -> str | None:
        for node in self.nodes:
            views = admin.nodes(node.port)
            healthy = {view.port for view in views if view.healthy}
            if len(healthy) != len(self.nodes):
                return f"node {node.port} has met {len(healthy)} of {len(self.nodes)} nodes"
        return None

    def _await(self, why: Callable[[_Admin], str | None], deadline: float, what: str) -> None:
        """Poll `why` (a reason to wait, or None) until it is None; RuntimeError naming `what`
        and the last reason at `deadline` (monotonic)."""
        with _Admin() as admin:
            while True:
                self.unsettled = self._why_not(why, admin)
                if self.unsettled is None:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out waiting for {what}: {self.unsettled}")
                time.sleep(0.05)

    @staticmethod
    def _why_not(why: Callable[[_Admin], str | None], admin: _Admin) -> str | None:
        import redis

        try:
            return why(admin)
        except redis.RedisError as exc:  # a node starting, loading or reconfiguring: not yet
            return f"a query failed: {exc!r}"

    # -- slot migration -------------------------------------------------------------------------

    def migrate_slots(
        self, slots: Sequence[int], src_port: int, dst_port: int, *, batch: int = 100
    ) -> None:
        """Move `slots` from the master on `src_port` to the one on `dst_port`, keys and
        ownership, slot by slot: `begin_migration`, then `finish_migration`. Safe while clients
        write to those slots. When it returns the masters agree on the new owner; replicas learn
        it by gossip (`wait_converged` waits for them)."""
        with _Admin() as admin:
            others = self._other_masters(admin, src_port, dst_port)
            for slot in slots:
                self._begin(admin, slot, src_port, dst_port)
                self._finish(admin, slot, src_port, dst_port, batch=batch, others=others)

    def begin_migration(self, slot: int, src_port: int, dst_port: int) -> None:
        """Mark `slot` IMPORTING on `dst_port`, then MIGRATING on `src_port`: from now on the
        source answers ASK for the slot's keys it no longer holds."""
        with _Admin() as admin:
            self._begin(admin, slot, src_port, dst_port)

    def migrate_keys(
        self, src_port: int, dst_port: int, keys: Sequence[str | bytes], *, timeout_ms: int = 5000
    ) -> None:
        """MIGRATE `keys` (of slots `begin_migration` marked) from `src_port` to `dst_port` in
        one atomic call; keys the source no longer holds are skipped."""
        with _Admin() as admin:
            self._migrate(admin, src_port, dst_port, list(keys), timeout_ms)

    def finish_migration(
        self, slot: int, src_port: int, dst_port: int, *, batch: int = 100
    ) -> None:
        """Move the keys of `slot` still on `src_port` (until `CLUSTER GETKEYSINSLOT` returns
        none: keys written meanwhile are moved too), then give the slot to `dst_port` (`CLUSTER
        SETSLOT NODE` on the destination, the source, then every other running master)."""
        with _Admin() as admin:
            others = self._other_masters(admin, src_port, dst_port)
            self._finish(admin, slot, src_port, dst_port, batch=batch, others=others)

    def _begin(self, admin: _Admin, slot: int, src_port: int, dst_port: int) -> None:
        admin(dst_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src_port))
        admin(src_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst_port))

    def _finish(
        self,
        admin: _Admin,
        slot: int,
        src_port: int,
        dst_port: int,
        *,
        batch: int,
        others: list[int],
    ) -> None:
        # Keys only land on the source while it holds some of the slot's keys (a write to a key
        # it lacks is answered ASK), so an empty GETKEYSINSLOT means the source is done.
        while keys := admin(src_port, "CLUSTER", "GETKEYSINSLOT", slot, batch):
            self._migrate(admin, src_port, dst_port, keys, 5000)
        dst_id = self.node_id(dst_port)
        for port in [dst_port, src_port, *others]:
            admin(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def _other_masters(self, admin: _Admin, src_port: int, dst_port: int) -> list[int]:
        """The running masters other than the two a migration is between."""
        return [
            port
            for port in self._running_ports()
            if port not in (src_port, dst_port) and admin.myself(port).is_master
        ]

    @staticmethod
    def _migrate(
        admin: _Admin, src_port: int, dst_port: int, keys: list[Any], timeout_ms: int
    ) -> None:
        if keys:
            command = ["MIGRATE", "127.0.0.1", dst_port, "", 0, timeout_ms, "KEYS", *keys]
            admin(src_port, *command)

    # -- failover -------------------------------------------------------------------------------

    def manual_failover(self, master_port: int, timeout: float = 30.0) -> int:
        """`CLUSTER FAILOVER` on a replica of the master on `master_port` (master and replica
        coordinate: no acknowledged write is lost); returns the replica's port once it serves
        the master's slots and the cluster converged (the old master then replicates it)."""
        deadline = time.monotonic() + timeout
        master_id = self.node_id(master_port)
        with _Admin() as admin:
            slots = admin.myself(master_port).slots
            candidates = self._replicas_of(admin, master_id)
            if not candidates:
                raise ValueError(f"node {master_port} has no running replica to fail over to")
            replica = candidates[0]
            admin(replica, "CLUSTER", "FAILOVER")
        self._await(
            lambda admin: self._serving(admin, replica, slots),
            deadline,
            f"node {replica} to take over from node {master_port}",
        )
        self._await(self._unconverged, deadline, "the cluster to converge")
        return replica

    def kill_master(self, port: int) -> None:
        """SIGKILL the master on `port`, noting its slots and replicas for `wait_for_promotion`.
        Its slots are unserved (every node soon reports `cluster_state:fail`) until a replica
        takes over (about 1.5 s at a 500 ms node timeout, 2-2.5 s at 1000 ms), or for good if it
        has none."""
        node = self._node(port)
        if node.pid is None:
            raise ValueError(f"node {port} is not running")
        with _Admin() as admin:
            me = admin.myself(port)
            if not me.is_master:
                raise ValueError(f"node {port} is not a master")
            self._killed[port] = (me.slots, self._replicas_of(admin, me.id))
        node.stop()

    def wait_for_promotion(self, old_port: int, timeout: float = 30.0) -> int:
        """The port of the replica that took over the slots of the master `kill_master` killed
        on `old_port`, once it serves them and the running nodes converged."""
        deadline = time.monotonic() + timeout
        if old_port not in self._killed:
            raise ValueError(f"node {old_port} was not killed by kill_master")
        slots, replicas = self._killed[old_port]
        if not replicas:
            raise RuntimeError(
                f"node {old_port} had no replica: its slots stay unserved until restart()"
            )
        promoted: list[int] = []

        def why(admin: _Admin) -> str | None:
            for port in replicas:
                if self._running(port) and self._serving(admin, port, slots) is None:
                    promoted.append(port)
                    return None
            return f"no replica of node {old_port} ({replicas}) serves its slots yet"

        self._await(why, deadline, f"a replica of node {old_port} to be promoted")
        self._await(self._unconverged, deadline, "the cluster to converge")
        return promoted[0]

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start the stopped node on `port` again (same port, directory and node id) and wait
        until the cluster converged; a master whose slots were taken over rejoins as a replica
        of the new owner."""
        self._node(port).start()
        self._killed.pop(port, None)
        self.wait_converged(timeout)

    def _serving(self, admin: _Admin, port: int, slots: frozenset[int]) -> str | None:
        me = admin.myself(port)
        if not me.is_master or not slots <= me.slots:
            return f"node {port} does not serve the slots yet"
        return None

    def _replicas_of(self, admin: _Admin, master_id: str) -> list[int]:
        return [port for port in self._running_ports() if admin.myself(port).master_id == master_id]

    # -- nodes ----------------------------------------------------------------------------------

    def _node(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise ValueError(f"no node of this cluster listens on port {port}")

    def _running(self, port: int) -> bool:
        return self._node(port).pid is not None

    def _running_ports(self) -> list[int]:
        return [node.port for node in self.nodes if node.pid is not None]

    def _first_running(self) -> int:
        live = self._running_ports()
        if not live:
            raise RuntimeError("no node is running")
        return live[0]


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
