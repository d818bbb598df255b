"""An in-process TCP proxy that injects network faults between a Redis client and server.

It forwards bytes both ways on loopback and can add a random per-chunk delay, hold replies back
until released, or lose replies: forward a request, wait until the server has answered it,
throw the answer away and drop the client's connection (the server applied the command, the
client never hears about it). Nothing here imitates Redis: every reply comes from the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from types import TracebackType
from typing import Self

__all__ = ["FaultProxy"]

_CHUNK = 65536


class _Link:
    """One proxied client connection and its upstream twin."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_reader, self.client_writer = client
        self.upstream_reader, self.upstream_writer = upstream
        self.doomed = False  # a request whose reply must be lost has gone upstream


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `upstream_port`; use `async with FaultProxy(...) as proxy:`."""

    def __init__(self, upstream_port: int, *, max_delay: float = 0.0, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.max_delay = max_delay
        self.port = 0
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._replies_flow = asyncio.Event()
        self._replies_flow.set()
        self._skip = 0
        self._lose = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- faults ----------------------------------------------------------------------------------

    def lose_replies(self, count: int, *, skip: int = 0) -> None:
        """Let `skip` requests through, then lose the replies to the next `count` requests.

        A request is one read from the client's socket: one command on a warm redis-py
        connection, whose commands go one at a time.
        """
        self._skip, self._lose = skip, count

    def hold_replies(self) -> None:
        """Keep every server reply in the proxy until `release_replies()`."""
        self._replies_flow.clear()

    def release_replies(self) -> None:
        self._replies_flow.set()

    # -- plumbing --------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                await self._pump(_Link((reader, writer), upstream))
            finally:
                await _close(upstream[1])
        except OSError:
            pass  # upstream unreachable: the client sees its connection closed
        except asyncio.CancelledError:
            pass  # aclose() ends the link; asyncio would log a cancelled handler as an error
        finally:
            self._handlers.discard(task)
            await _close(writer)

    async def _pump(self, link: _Link) -> None:
        """Forward both ways until either side closes (or a lost reply ends the link)."""
        pumps = [
            asyncio.create_task(self._requests(link)),
            asyncio.create_task(self._replies(link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _delay(self) -> None:
        if self.max_delay > 0:
            await asyncio.sleep(self._random.uniform(0, self.max_delay))  # injected latency

    async def _requests(self, link: _Link) -> None:
        while chunk := await _read(link.client_reader):
            await self._delay()
            if self._skip > 0:
                self._skip -= 1
            elif self._lose > 0:
                self._lose -= 1
                link.doomed = True
            link.upstream_writer.write(chunk)
            await link.upstream_writer.drain()

    async def _replies(self, link: _Link) -> None:
        while chunk := await _read(link.upstream_reader):
            if link.doomed:
                return  # the server has answered; the client never will hear it
            await self._replies_flow.wait()
            await self._delay()
            link.client_writer.write(chunk)
            await link.client_writer.drain()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(_CHUNK)
    except OSError:
        return b""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
