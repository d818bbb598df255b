"""The connection, the SCAN walk, the progress line and Ctrl-C, shared by every command.

The walk never uses KEYS: it SCANs `{namespace}:*` with a COUNT hint, so each server call does
a bounded amount of work, and reads each batch's types, expiries and values in one script call
(`scripts.FETCH`, lua/fetch.lua: redis-py spends far more per command than Redis does). SCAN
may return a key twice (the table can be rehashed mid-walk), so names are deduplicated; a key
deleted meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..backends.redis.errors import to_session_error
from ..backends.redis.options import RedisOptions, redact_url
from ..errors import InvalidInputError, SessionError
from ..fence import UserSlot
from .layout import Kind, Layout, Parsed
from .scripts import FETCH

__all__ = ["Connection", "Entry", "Progress", "Stop", "Walker", "as_text", "connect"]

T = TypeVar("T")

SCAN_COUNT = 1000


class Connection:
    """One redis.asyncio client with redis-py's retries off (a write is never re-sent), whose
    failures become `SessionError`s with the password scrubbed."""

    def __init__(self, client: aioredis.Redis, *, where: str, timeout: float) -> None:
        self.client = client
        self.where = where
        self.timeout = timeout
        password = client.connection_pool.connection_kwargs.get("password")
        self._secret = password if isinstance(password, str) and password else None

    def error(self, exc: redis_errors.RedisError, *, write: bool) -> SessionError:
        return to_session_error(
            exc,
            write=write,
            key=None,
            where=self.where,
            socket_timeout=self.timeout,
            secret=self._secret,
        )

    async def call(self, op: Callable[..., Awaitable[T]], *args: Any, write: bool = False) -> T:
        try:
            return await op(*args)
        except redis_errors.RedisError as exc:
            raise self.error(exc, write=write) from None

    async def aclose(self) -> None:
        with contextlib.suppress(redis_errors.RedisError):  # a broken connection: no matter
            await self.client.aclose()


def connect(url: str, *, timeout: float, tls_ca_file: str | None = None) -> Connection:
    """A connection to `url` (validated as the stores validate it; nothing is sent yet)."""
    RedisOptions(url=url, socket_timeout=timeout, connect_timeout=timeout)
    extra: dict[str, Any] = {}
    if tls_ca_file is not None:
        if not url.startswith("rediss://"):
            raise InvalidInputError("--tls-ca-file needs a rediss:// URL")
        extra["ssl_ca_certs"] = tls_ca_file
    try:
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=4,
            **extra,
        )
    except ValueError:
        raise InvalidInputError("malformed Redis URL") from None
    return Connection(client, where=redact_url(url), timeout=timeout)


class Stop:
    """Set by the first Ctrl-C: a walk ends after its current batch and the summary so far is
    printed. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> None:
        self.requested = True
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt
            self._loop = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.request)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # not the main thread, or no signals here: Ctrl-C stays KeyboardInterrupt
        self._loop = loop

    def uninstall(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._shown = 0.0
        self._dirty = False

    def update(
        self, label: str, done: int, fraction: float | None = None, *, total: int | None = None
    ) -> None:
        """Show `done` items (of `total`, when given); `fraction` is the estimated share of the
        walk behind us."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown < 0.1:
            return
        self._shown = now
        if fraction is not None:
            fraction = min(fraction, 0.99)
            filled = int(fraction * 30)
            bar = f" [{'#' * filled}{'.' * (30 - filled)}] ~{fraction:.0%}"
        else:
            bar = ""
        count = f"{done:,}" if total is None else f"{done:,}/{total:,}"
        self.stream.write(f"\r{label}: {count}{bar}\x1b[K")
        self.stream.flush()
        self._dirty = True

    def finish(self) -> None:
        if self._dirty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._dirty = False


@dataclass(slots=True)
class Entry:
    """One key of the namespace as the walk found it."""

    name: str  # relative to the namespace
    parsed: Parsed
    pttl: int | None  # remaining milliseconds, None when the key has no expiry
    type_name: str  # the Redis type found
    value: bytes | None = None  # string kinds of the right type
    members: frozenset[str] | None = None  # WAIT_SET of the right type

    @property
    def kind(self) -> Kind:
        return self.parsed.kind

    @property
    def slot(self) -> UserSlot | None:
        return self.parsed.slot

    @property
    def wrong_type(self) -> bool:
        if self.parsed.kind is Kind.OTHER:
            return False
        return self.type_name != ("set" if self.parsed.kind is Kind.WAIT_SET else "string")


def _pttl(reply: int) -> int | None:
    # PTTL: -1 no expiry; 0 means it expires this millisecond, kept as 1 so it stays an expiry.
    return None if reply < 0 else max(reply, 1)


def as_text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


class Walker:
    """Walks every key of one namespace in SCAN batches; see the module docstring."""

    def __init__(
        self,
        conn: Connection,
        layout: Layout,
        *,
        stop: Stop,
        progress: Progress,
        label: str = "keys",
        count: int = SCAN_COUNT,
    ) -> None:
        self.conn = conn
        self.layout = layout
        self.stop = stop
        self.progress = progress
        self.label = label
        self.count = count
        self.scanned = 0  # distinct names SCAN returned
        self.vanished = 0  # deleted between SCAN and the fetch
        self.interrupted = False

    async def batches(
        self, kinds: frozenset[Kind] | None = None, match: str | None = None
    ) -> AsyncIterator[list[Entry]]:
        """Entries of each SCAN batch, of `kinds` only (all when None); others are not read.

        The next batch is scanned and read while the caller works on this one, so Redis and
        this process work at the same time; the first Ctrl-C lets the batch in hand finish.
        """
        total = await self.conn.call(self.conn.client.dbsize)
        seen: set[bytes] = set()
        calls = 0
        pending: asyncio.Task[tuple[int, list[Entry]]] | None = asyncio.create_task(
            self._step(0, seen, kinds, match or self.layout.match)
        )
        try:
            while pending is not None:
                cursor, entries = await pending
                pending = None
                calls += 1
                if cursor != 0 and not self.stop.requested:
                    pending = asyncio.create_task(
                        self._step(cursor, seen, kinds, match or self.layout.match)
                    )
                self.interrupted = cursor != 0 and pending is None
                # SCAN examines about COUNT keys of the whole database per call: an estimate.
                self.progress.update(self.label, self.scanned, calls * self.count / max(total, 1))
                if entries:
                    yield entries
        finally:
            if pending is not None:  # the caller stopped early or failed
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, SessionError):
                    await pending
            self.progress.finish()

    async def _step(
        self, cursor: int, seen: set[bytes], kinds: frozenset[Kind] | None, match: str
    ) -> tuple[int, list[Entry]]:
        """One SCAN call from `cursor`, and the read of the names it returned for the first time."""
        cursor, names = await self.conn.call(self.conn.client.scan, cursor, match, self.count)
        # decode_responses is off: names are bytes.
        fresh = [name for name in names if isinstance(name, bytes) and name not in seen]
        seen.update(fresh)
        self.scanned += len(fresh)
        wanted = []
        for full in fresh:
            name = self.layout.relative(full)
            if name is None:
                continue
            parsed = self.layout.parse(name)
            if kinds is None or parsed.kind in kinds:
                wanted.append((name, parsed))
        return cursor, (await self._fetch(wanted) if wanted else [])

    async def _fetch(self, wanted: list[tuple[str, Parsed]]) -> list[Entry]:
        # Keys of a known kind first: the script returns values for the first ARGV[1] keys.
        wanted.sort(key=lambda item: item[1].kind is Kind.OTHER)
        known = sum(parsed.kind is not Kind.OTHER for _, parsed in wanted)
        names = [self.layout.full(name).encode() for name, _ in wanted]
        lengths = ",".join([str(len(name)) for name in names])
        replies = await self.conn.call(
            self.conn.client.eval, FETCH, 0, lengths, b"".join(names), known
        )
        entries: list[Entry] = []
        for index, (name, parsed) in enumerate(wanted):
            type_name, pttl, value = replies[3 * index : 3 * index + 3]
            type_name = as_text(type_name)
            if type_name == "none":  # deleted between SCAN and now
                self.vanished += 1
                continue
            entry = Entry(name, parsed, _pttl(pttl), type_name)
            if entry.wrong_type or parsed.kind is Kind.OTHER:
                pass
            elif parsed.kind is Kind.WAIT_SET:
                entry.members = frozenset(as_text(member) for member in value)
            else:
                entry.value = value
            entries.append(entry)
        return entries
