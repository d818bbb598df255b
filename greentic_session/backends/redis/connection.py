"""One auto-pipelined Redis connection: an `asyncio.Protocol` parsing replies with `hiredis`.

Commands submitted during one event-loop turn are written together, in one `transport.write`,
by a single callback the loop runs at the end of the turn. Replies arrive in the order the
commands were written and resolve their futures first-in, first-out.

Rules that keep every caller's reply its own (see docs/transport.md for the hazards):
- A request is written whole or not at all: a MULTI ... EXEC unit is one request, one payload,
  so no other caller's command can land inside it and it can never be left half-sent.
- A request whose future is already done (its caller was cancelled) when the batch is written is
  dropped from the batch: never sent.
- A request that was written keeps its place in the reply queue until its reply arrives; a
  cancelled caller's reply is read and thrown away, so the connection stays in sync.
- When the link fails, every written request fails with `ConnectionLostError`
  (`WriteOutcomeUnknownError` for a write) and nothing is ever re-sent; requests not yet written
  fail with `NotSentError`. The connection is then dead; the pool opens a new one lazily.
- One watchdog timer per connection (not per call) fails the connection's calls with
  `ReplyTimeoutError` and drops it when its oldest unanswered request is older than
  `socket_timeout`.
- Any event loop: the transport is used only through `Link` (write, abort, close,
  get_extra_info), never through its class (uvloop's are not asyncio's). No exception leaves a
  protocol callback: one the loop would only log (and so leave every caller waiting) fails the
  connection's calls and aborts the link, and a connection whose `connection_made` did not
  complete is never `ready`.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import hiredis
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

__all__ = [
    "BatchedConnection",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "Link",
    "NotSentError",
    "PoolBusyError",
    "ReplyTimeoutError",
    "TransportError",
    "WriteOutcomeUnknownError",
    "pack",
]

# -- errors ----------------------------------------------------------------------------------
# All subclass redis-py's exceptions, so code that maps redis-py failures keeps working: "not
# sent" and "sent, reply lost" are distinct types, so a caller never has to guess from a message.


class TransportError(redis_errors.ConnectionError):
    """A batched call failed because of its connection, not because Redis refused it."""


class NotSentError(TransportError):
    """The command never left this process: safe to retry, even a write."""


class ConnectError(NotSentError):
    """A connection could not be opened or set up (TCP, TLS, AUTH, SELECT)."""


class ConnectTimeoutError(ConnectError):
    """Opening and setting up a connection took longer than `connect_timeout`.

    Another try would most likely wait as long again, so reads do not retry it (as redis-py's
    own connect timeout, a `TimeoutError`, is not retried).
    """


class PoolBusyError(NotSentError):
    """Every connection stayed at its in-flight bound for the whole queue timeout.

    The message starts with redis-py's "No connection available", as its own pool-full error does.
    """


class ConnectionLostError(TransportError):
    """The command was written and the link failed before its reply came back."""


class WriteOutcomeUnknownError(ConnectionLostError):
    """A write was sent and its reply lost: Redis may or may not have applied it."""


class ReplyTimeoutError(redis_errors.TimeoutError):
    """No reply within `socket_timeout`; the command was sent, the connection is dropped.

    `write` says whether the call could have changed data (its outcome is then unknown).
    """

    def __init__(self, message: str, *, write: bool) -> None:
        super().__init__(message)
        self.write = write


# -- wire ------------------------------------------------------------------------------------

_INCOMPLETE = object()  # what hiredis.Reader.gets() returns until a whole reply has arrived
_ONE = 1


def pack(args: tuple[Any, ...]) -> bytes:
    """The RESP encoding of one command (`str` is UTF-8; `int`/`float` as text; no `bool`)."""
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError as exc:
        raise redis_errors.DataError(f"cannot send a command argument: {exc}") from None
    return packed


def _reader() -> hiredis.Reader:
    # Error replies become redis-py's own exception classes (NoScriptError, NoPermissionError,
    # ReadOnlyError, ExecAbortError, AuthenticationError...) through its own parser table.
    return hiredis.Reader(
        protocolError=redis_errors.InvalidResponse,
        replyError=BaseParser.parse_error,
        notEnoughData=_INCOMPLETE,
    )


@runtime_checkable
class Link(Protocol):
    """What the connection uses of its transport: asyncio's, uvloop's or any other loop's."""

    def write(self, data: bytes, /) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None, /) -> Any: ...


class _Request:
    """One unit written whole: a command, or MULTI ... EXEC (`replies` > 1)."""

    __slots__ = ("collected", "future", "payload", "replies", "sent_at", "size", "write")

    def __init__(
        self, future: asyncio.Future[Any], payload: bytes, replies: int, write: bool
    ) -> None:
        self.future = future
        self.payload = payload
        self.size = len(payload)
        self.replies = replies
        self.write = write
        self.sent_at = 0.0
        self.collected: list[Any] | None = None if replies == _ONE else []


class BatchedConnection(asyncio.Protocol):
    """One Redis connection that writes each loop turn's commands as one batch.

    `where` names the server for error messages (host:port or socket path, never a password).
    `on_capacity` is called when replies free room (the pool wakes waiters with it).
    """

    def __init__(
        self,
        *,
        where: str,
        socket_timeout: float | None,
        on_capacity: Callable[[], None] | None = None,
    ) -> None:
        self.where = where
        self.socket_timeout = socket_timeout
        self.on_capacity = on_capacity
        self.loop = asyncio.get_running_loop()
        self.transport: Link | None = None
        self.closed = False  # no new requests: the link failed or close() was called
        # What a protocol callback raised, if one failed: the setup's error chains it.
        self.fault: Exception | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self._reader = _reader()
        self._outbox: list[_Request] = []
        self._pending: collections.deque[_Request] = collections.deque()
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self.queued_bytes = 0  # bytes submitted and not yet answered (written or not)
        self.batches = 0  # writes made, for the mean batch size
        self.batched = 0  # requests written

    # -- load, for the pool's least-loaded choice ----------------------------------------------

    @property
    def ready(self) -> bool:
        """`connection_made` completed and the link has not failed since."""
        return self.transport is not None and not self.closed

    @property
    def outstanding(self) -> int:
        """Requests submitted and not yet answered (written or waiting for this turn's write)."""
        return len(self._outbox) + len(self._pending)

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, payload: bytes, *, replies: int = _ONE, write: bool) -> asyncio.Future[Any]:
        """Queue `payload` (holding `replies` commands) for this turn's batch; its future gets
        the reply (a list of them when `replies` > 1), or the error."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.closed:
            future.set_exception(NotSentError(f"connection to {self.where} is closed"))
            return future
        self._outbox.append(_Request(future, payload, replies, write))
        self.queued_bytes += len(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if self.closed or self.transport is None:
            # Closed: _fail_all or close() failed these already. Never attached: nobody else will.
            for request in outbox:
                if not request.future.done():
                    request.future.set_exception(NotSentError(f"no connection to {self.where}"))
            return
        now = self.loop.time()
        chunks: list[bytes] = []
        for request in outbox:
            if request.future.done():  # cancelled before its batch went out: never sent
                self.queued_bytes -= request.size
                continue
            request.sent_at = now
            chunks.append(request.payload)
            self._pending.append(request)
        if not chunks:
            self._capacity_freed()
            return
        self.batches += 1
        self.batched += len(chunks)
        try:
            self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception as exc:  # the loop would only log it: fail the calls instead
            self._break(f"writing to {self.where} failed ({type(exc).__name__})", exc)
            return
        if self._watchdog is None and self.socket_timeout is not None:
            self._watchdog = self.loop.call_at(now + self.socket_timeout, self._check_timeout)

    # -- replies -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not _INCOMPLETE:
                self._deliver(reply)
            if self.on_capacity is not None:
                self.on_capacity()
        except redis_errors.InvalidResponse as exc:
            # The stream can no longer be trusted: no later reply may reach any caller.
            self._break(f"unparsable reply from {self.where}: {exc}", exc)
        except Exception as exc:
            # Not the peer's doing (a bug, a fault): the stream is as untrusted, and the loop
            # would only log it while every caller waits. Only the type: its text may hold data.
            self._break(f"handling a reply from {self.where} failed ({type(exc).__name__})", exc)

    def _deliver(self, reply: Any) -> None:
        pending = self._pending
        if not pending:
            raise redis_errors.InvalidResponse("a reply nobody asked for")
        request = pending[0]
        collected = request.collected
        if collected is not None:
            collected.append(reply)
            if len(collected) < request.replies:
                return
            reply = collected
        pending.popleft()
        self.queued_bytes -= request.size
        future = request.future
        if future.done():
            return  # its caller was cancelled after the write: the reply is read and dropped
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def _capacity_freed(self) -> None:
        if self.on_capacity is not None:
            self.on_capacity()

    # -- time limit ----------------------------------------------------------------------------

    def _check_timeout(self) -> None:
        self._watchdog = None
        if not self._pending or self.socket_timeout is None:
            return
        oldest = self._pending[0].sent_at
        if self.loop.time() < oldest + self.socket_timeout:
            self._watchdog = self.loop.call_at(oldest + self.socket_timeout, self._check_timeout)
            return
        pending = list(self._pending)
        self._pending.clear()
        message = f"no reply from {self.where} within socket_timeout={self.socket_timeout}s"
        for request in pending:
            if not request.future.done():
                request.future.set_exception(ReplyTimeoutError(message, write=request.write))
        self._fail_all(ConnectionLostError, message)
        self._drop_link()

    # -- the link ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:
            self._attach(transport)
        except Exception as exc:  # the loop would only log it: the pool sees `ready` False
            self.fault = exc
            self.closed = True
            transport.close()

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, Link):
            raise TypeError(f"{type(transport).__name__} lacks write, abort or get_extra_info")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        # A socket's error says what happened; anything else (a callback that raised, which the
        # loop passes on) only by its type, since its text may hold data.
        detail = (
            "" if exc is None else f": {exc if isinstance(exc, OSError) else type(exc).__name__}"
        )
        reason = f"connection to {self.where} lost{detail}"
        self._fail_all(ConnectionLostError, reason, exc)
        if not self.lost.done():
            self.lost.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost fails whatever is in flight

    def _fail_all(
        self, lost: type[ConnectionLostError], reason: str, cause: BaseException | None = None
    ) -> None:
        """Fail every request: written ones as lost (never re-sent), unwritten as not sent.
        `cause` (the socket's or the parser's error) is chained, so the error mapping can name
        the likely misconfiguration behind it."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, collections.deque()
        outbox, self._outbox = self._outbox, []
        self.queued_bytes = 0
        for request in pending:
            if not request.future.done():
                kind = WriteOutcomeUnknownError if request.write else lost
                failure: Exception = kind(reason)
                failure.__cause__ = cause
                request.future.set_exception(failure)
        for request in outbox:
            if not request.future.done():
                failure = NotSentError(f"{reason} (not sent)")
                failure.__cause__ = cause
                request.future.set_exception(failure)
        self._capacity_freed()

    def _break(self, reason: str, cause: Exception) -> None:
        """A callback failed: every call fails (nothing is re-sent) and the link is dropped."""
        self.fault = cause
        self._fail_all(ConnectionLostError, reason, cause)
        self._drop_link()

    def _drop_link(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the link at once (a setup that failed): every call fails, nothing is sent."""
        self._fail_all(ConnectionLostError, f"connection to {self.where} aborted")
        if self.transport is not None:
            self.transport.abort()
        elif not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        """Stop taking requests and close the link: calls not yet written fail as not sent,
        written ones as lost once the link is down."""
        self.closed = True
        outbox, self._outbox = self._outbox, []
        for request in outbox:
            if not request.future.done():
                request.future.set_exception(NotSentError(f"connection to {self.where} closed"))
        if self.transport is not None:
            self.transport.close()
        elif not self.lost.done():
            self.lost.set_result(None)
