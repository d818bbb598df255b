"""What one operation costs on the wire: client round trips, new connections, server commands.

Round trips are counted on the client by wrapping redis-py's connection class: a send that
follows a read (or is the first on a connection) starts a new round trip, so a pipelined
MULTI ... EXEC is one round trip however many commands it carries. New TCP connections are
counted separately (each costs at least one more round trip for the handshake).

Server commands come from `INFO commandstats` deltas (commands a Lua script runs are counted by
the server too, so an EVALSHA shows up with the GETs and SETs it made). `INFO` itself is left
out. On a server shared with other clients the deltas include their traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio import connection as rconn

__all__ = ["WireCounter", "command_deltas", "commandstats", "server_cpu_seconds"]


@dataclass
class WireCounter:
    round_trips: int = 0
    connects: int = 0
    _last: dict[int, str] = field(default_factory=dict)

    def reset(self) -> None:
        self.round_trips = 0
        self.connects = 0
        self._last.clear()

    @contextmanager
    def installed(self) -> Iterator[WireCounter]:
        """Count on every redis.asyncio connection while the block runs."""
        abstract = rconn.AbstractConnection
        tcp = rconn.Connection
        orig_send = abstract.send_packed_command
        orig_read = abstract.read_response
        orig_connect = tcp._connect
        counter = self

        async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
            if counter._last.get(id(self)) != "send":
                counter.round_trips += 1
            counter._last[id(self)] = "send"
            await orig_send(self, command, check_health)

        async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter._last[id(self)] = "read"
            return await orig_read(self, *args, **kwargs)

        async def _connect(self: Any) -> None:
            counter.connects += 1
            await orig_connect(self)

        abstract.send_packed_command = send_packed_command  # type: ignore[method-assign]
        abstract.read_response = read_response  # type: ignore[method-assign]
        tcp._connect = _connect  # type: ignore[method-assign]
        try:
            yield self
        finally:
            abstract.send_packed_command = orig_send  # type: ignore[method-assign]
            abstract.read_response = orig_read  # type: ignore[method-assign]
            tcp._connect = orig_connect  # type: ignore[method-assign]


Stats = dict[str, tuple[int, int]]


async def commandstats(client: aioredis.Redis) -> Stats:
    """(calls, usec) per command name since the server started (or `CONFIG RESETSTAT`)."""
    info: dict[str, Any] = await client.info("commandstats")
    out: Stats = {}
    for name, stats in info.items():
        if name.startswith("cmdstat_") and isinstance(stats, dict):
            out[name.removeprefix("cmdstat_")] = (int(stats["calls"]), int(stats["usec"]))
    return out


def command_deltas(
    before: Stats, after: Stats, ops: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Per operation, between two `commandstats` snapshots (`info` excluded): calls per command,
    and server microseconds per command (a script's time includes the commands it ran)."""
    calls: dict[str, float] = {}
    usec: dict[str, float] = {}
    for name, (count, micros) in sorted(after.items()):
        if name == "info":
            continue
        count0, micros0 = before.get(name, (0, 0))
        if count - count0:
            calls[name] = round((count - count0) / ops, 3)
            usec[name] = round((micros - micros0) / ops, 2)
    return calls, usec


async def server_cpu_seconds(client: aioredis.Redis) -> float:
    """The server process's CPU time so far (user + system, all threads)."""
    info: dict[str, Any] = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
