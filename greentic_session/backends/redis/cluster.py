"""Redis Cluster: every call goes to the master that owns its hash slot, as one command or one
script on that node, through the node's own `RedisCaller` (batched or not, as on one node).

Why not redis-py's `RedisCluster` (measured with redis-py 8.1 on 3 loopback masters): its
default retries re-send a write whose reply was lost; a slot migration made it close connections
other tasks were using; one killed master stalled calls for the healthy masters too (it closes
every node's connections on a connection error); and a transactional `ClusterPipeline` costs
4.8x a single-node MULTI. Here each node keeps its own connections (one node's failure is that
node's calls' failure), writes are never re-sent, and only the replies that say a call ran
nowhere move it:
- `MOVED slot host:port`: the slot lives elsewhere now. The slot table learns it at once, the
  call goes there (at most `_MAX_REDIRECTS` hops), and the whole table is re-read in the
  background (one re-read at a time), since a migration rarely moves one slot.
- `ASK slot host:port`: the slot is mid-migration and this key already moved. A plain command
  (a GET) follows it with ASKING on the target's connection. A script does not: on the target
  it would read keys it did not declare, which may still be on the source, as missing; it waits
  for the slot to finish moving instead, as for:
- `TRYAGAIN`, or a script's "non local key" error (it met a key that already moved; every
  script reads before it writes, so it wrote nothing): retried after short pauses for at most
  `socket_timeout`, then `UnavailableError`.
- `CLUSTERDOWN` (the cluster state is `fail`: for a moment during a failover's switch, or until
  a replica takes over a lost master's slots): waited out the same way, then `UnavailableError`.
A call whose node cannot be reached raises what the node caller raises (`UnavailableError`, or
`UnknownOutcomeError` for a write whose reply was lost) and makes the table be re-read, so calls
find a promoted replica as soon as the cluster reports it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.crc import key_slot

from ...errors import ErrorCode, InternalError, SessionError, StoreClosedError, UnavailableError
from .caller import ConnectionStats, Moving, RedisCaller, cancel_idle
from .errors import ClusterRedirect
from .scripts import Script

__all__ = ["ClusterCaller", "Node", "parse_slots"]

T = TypeVar("T")

Node = tuple[str, int]  # a master's (host, port)

SLOTS = 16384
_MAX_REDIRECTS = 5
# Pauses while a slot is mid-migration (TRYAGAIN, or a script's ASK): short at first, since
# moving one slot's keys takes milliseconds; the total is bounded by socket_timeout.
_BUSY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
# A table re-read after a connection failure waits at least this long after the previous one,
# so a dead master's calls do not re-read it once each.
_REFRESH_INTERVAL = 0.05

log = logging.getLogger("greentic_session.redis")


def _slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def _retrieve(task: asyncio.Task[None]) -> None:
    """A background re-read's failure was logged or is some waiting call's error."""
    if not task.cancelled():
        task.exception()


def parse_slots(reply: Any, asked: Node) -> list[tuple[int, int, Node]]:
    """CLUSTER SLOTS' reply as (first slot, last slot, master); an empty host means `asked`'s."""
    ranges: list[tuple[int, int, Node]] = []
    for entry in reply:
        first, last, master = entry[0], entry[1], entry[2]
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        ranges.append((int(first), int(last), (host or asked[0], int(master[1]))))
    return ranges


class ClusterCaller:
    """The `caller.Caller` of a cluster store: routes `eval`, `execute` and `transaction` by slot.

    `node` builds the caller of one master (connections, time limits, error mapping: the same
    `RedisCaller` as a single-node store, told to raise `ClusterRedirect` instead of mapping
    redirects). Nothing connects until the first call.
    """

    def __init__(
        self,
        startup: Sequence[Node],
        node: Callable[[Node], RedisCaller],
        *,
        where: str,
        busy_timeout: float,
    ) -> None:
        self.where = where
        self._startup = list(startup)
        self._new_node = node
        self._nodes: dict[Node, RedisCaller] = {}
        self._slots: list[Node | None] = [None] * SLOTS
        self._busy_timeout = busy_timeout
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = -1.0  # time.monotonic() of the last re-read's end
        self._closed = False

    def pool_stats(self) -> ConnectionStats:
        """Every master's connections made so far, and their sum."""
        return ConnectionStats.total(
            {f"{host}:{port}": node.pool_stats() for (host, port), node in self._nodes.items()}
        )

    def nodes(self) -> dict[Node, RedisCaller]:
        """The node callers made so far (tests and operators' tools)."""
        return dict(self._nodes)

    async def masters(self) -> list[RedisCaller]:
        """A caller for every master that serves a slot, after a fresh read of the slot table
        (for walks over the whole keyspace, such as `erase_user`'s SCAN)."""
        await self._refreshed()
        return [self._node(address) for address in dict.fromkeys(self._slots) if address]

    # -- calls ---------------------------------------------------------------------------------

    async def eval(
        self,
        script: Script,
        keys: tuple[str, ...],
        args: tuple[str | bytes | int, ...],
        *,
        write: bool = False,
        key: str | None = None,
        moving: Moving = "wait",
    ) -> Any:
        """Run `script` on the master of `keys[0]`'s slot (every key in it shares that slot).

        While that slot is mid-migration the script waits for it to settle (`moving="wait"`),
        or, with `moving="raise"` (a read the caller can do key by key instead), the
        `ClusterRedirect` is raised to the caller at once.
        """

        slot = _slot(keys[0])
        node = self._known_owner(slot)
        if node is not None:  # the common case: straight to the owner, no routing frame
            try:
                return await node.eval(script, keys, args, write=write, key=key)
            except ClusterRedirect as exc:
                first: ClusterRedirect | None = exc
            except SessionError as exc:
                self._on_failure(exc)
                raise
        else:
            first = None

        def run(node: RedisCaller, asking: bool) -> Awaitable[Any]:
            return node.eval(script, keys, args, write=write, key=key)

        return await self._route(slot, run, follow_ask=False, moving=moving, first=first)

    async def execute(self, *args: Any, write: bool = False, key: str | None = None) -> Any:
        """One single-key command (`args[1]` is its key) on the master of that key's slot."""

        slot = _slot(args[1])
        node = self._known_owner(slot)
        if node is not None:  # the common case: straight to the owner, no routing frame
            try:
                return await node.execute(*args, write=write, key=key)
            except ClusterRedirect as exc:
                first: ClusterRedirect | None = exc
            except SessionError as exc:
                self._on_failure(exc)
                raise
        else:
            first = None

        def run(node: RedisCaller, asking: bool) -> Awaitable[Any]:
            return node.execute(*args, write=write, key=key, asking=asking)

        return await self._route(slot, run, follow_ask=True, first=first)

    async def transaction(
        self, commands: Sequence[tuple[Any, ...]], *, key: str | None = None
    ) -> list[Any]:
        """MULTI ... EXEC on the master of the first command's key (all share its slot)."""

        def run(node: RedisCaller, asking: bool) -> Awaitable[list[Any]]:
            return node.transaction(commands, key=key)

        return await self._route(_slot(commands[0][1]), run, follow_ask=False)

    async def _route(
        self,
        slot: int,
        run: Callable[[RedisCaller, bool], Awaitable[T]],
        *,
        follow_ask: bool,
        moving: Moving = "wait",
        first: ClusterRedirect | None = None,
    ) -> T:
        """Run `run` on `slot`'s master until it runs somewhere (see the module docstring);
        `first` is the redirect a first try (the callers' fast path) already got."""
        hops = 0
        pauses = 0
        busy_since: float | None = None
        asking: Node | None = None
        while True:
            if first is not None:
                redirect, first = first, None
            else:
                if asking is not None:
                    node = self._node(asking)
                else:  # the common case (a known owner) awaits nothing
                    node = self._known_owner(slot) or await self._owner(slot)
                try:
                    return await run(node, asking is not None)
                except ClusterRedirect as exc:
                    redirect = exc
                except SessionError as exc:
                    self._on_failure(exc)
                    raise
            asking = None
            if redirect.kind == "moved" or (redirect.kind == "ask" and follow_ask):
                hops += 1
                if hops > _MAX_REDIRECTS or redirect.address is None:
                    break
                if redirect.kind == "moved":
                    self._slots[redirect.slot] = redirect.address
                    self._schedule_refresh(at_once=True)
                else:
                    asking = redirect.address
                continue
            # Mid-migration (TRYAGAIN, a script's ASK, a script meeting a moved key): nothing
            # ran; wait for the slot to settle, or let the caller read key by key.
            if moving == "raise" and redirect.kind != "down":
                raise redirect
            busy_since = busy_since or asyncio.get_running_loop().time()
            await self._wait_out(redirect, busy_since, pauses)
            pauses += 1
        raise UnavailableError(
            f"the Redis Cluster at {self.where} redirected a call {_MAX_REDIRECTS} times; "
            "nothing was written"
        )

    async def _wait_out(self, redirect: ClusterRedirect, since: float, pauses: int) -> None:
        """Pause before calling a busy slot again, or give up once it stayed busy for
        `busy_timeout` since `since`."""
        if asyncio.get_running_loop().time() - since >= self._busy_timeout:
            state = "down" if redirect.kind == "down" else "mid-migration"
            raise UnavailableError(
                f"a slot of the Redis Cluster at {self.where} stayed {state} for "
                f"{self._busy_timeout}s; nothing was written"
            )
        await asyncio.sleep(_BUSY_PAUSES[min(pauses, len(_BUSY_PAUSES) - 1)])

    # -- the slot table ------------------------------------------------------------------------

    def _node(self, address: Node) -> RedisCaller:
        node = self._nodes.get(address)
        if node is None:
            if self._closed:  # a call that outlived aclose (waiting out a migration, say)
                raise StoreClosedError("the session store is closed")
            node = self._nodes[address] = self._new_node(address)
        return node

    def _on_failure(self, exc: SessionError) -> None:
        if exc.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
            self._schedule_refresh()  # a dead master: look for its promoted replica

    def _known_owner(self, slot: int) -> RedisCaller | None:
        address = self._slots[slot]
        return None if address is None else self._nodes.get(address)

    async def _owner(self, slot: int) -> RedisCaller:
        address = self._slots[slot]
        if address is None:
            await self._refreshed()
            address = self._slots[slot]
            if address is None:
                raise UnavailableError(
                    f"no master of the Redis Cluster at {self.where} serves slot {slot}"
                )
        return self._node(address)

    async def _refreshed(self) -> None:
        """Wait for a re-read of the slot table (starting one unless one is under way). The
        re-read is shared: a cancelled waiter leaves it running, and its own end (cancelled by
        `aclose`, say) is not the waiter's cancellation."""
        self._schedule_refresh(at_once=True)
        task = self._refresh
        if task is None:  # closed
            raise StoreClosedError("the session store is closed")
        await asyncio.wait([task])
        if task.cancelled():
            raise StoreClosedError("the session store is closed")
        failure = task.exception()
        if failure is not None:
            raise failure

    def _schedule_refresh(self, *, at_once: bool = False) -> None:
        if self._closed:
            return
        task = self._refresh
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        if not at_once and time.monotonic() - self._refreshed_at < _REFRESH_INTERVAL:
            return
        self._refresh = task = loop.create_task(self._read_table())
        task.add_done_callback(_retrieve)

    async def _read_table(self) -> None:
        """Ask the known masters, then the startup nodes, for CLUSTER SLOTS; the first answer
        replaces the table. When none answers, the table stays and calls fail on their own."""
        try:
            asked: list[Node] = []
            for address in [*dict.fromkeys(a for a in self._slots if a is not None)]:
                asked.append(address)
            asked += [address for address in self._startup if address not in asked]
            for address in asked:
                try:
                    reply = await self._node(address).execute("CLUSTER", "SLOTS")
                except SessionError:
                    continue
                try:
                    ranges = parse_slots(reply, address)
                except (TypeError, ValueError, IndexError, UnicodeDecodeError):
                    raise InternalError(
                        f"a node of the Redis Cluster at {self.where} sent an unusable CLUSTER "
                        "SLOTS reply"
                    ) from None
                table: list[Node | None] = [None] * SLOTS
                for first, last, master in ranges:
                    for slot in range(first, min(last, SLOTS - 1) + 1):
                        table[slot] = master
                self._slots = table
                return
            log.warning("no node of the Redis Cluster at %s answered CLUSTER SLOTS", self.where)
        finally:
            self._refreshed_at = time.monotonic()

    # -- closing -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every node's connections; calls still under way then raise StoreClosedError
        (or their node's error) instead of opening new connections."""
        self._closed = True
        task, self._refresh = self._refresh, None
        if task is not None and not task.done():
            if task.get_loop() is asyncio.get_running_loop():
                task.cancel()
                await asyncio.wait([task])
            else:
                cancel_idle(task)  # another loop's: cancelled there, if that loop runs again
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.aclose()
