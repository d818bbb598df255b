"""Redis Cluster for tests: masters, their replicas, slot migrations and failovers, all on
private servers. A topology's state (every node agreeing on the slot map) is polled, with a
deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from .server import RedisServer, free_port

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
