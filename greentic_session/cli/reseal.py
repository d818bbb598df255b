"""`reseal`: rewrite every session blob of the namespace as the run's settings write it, under
the active key of its key ring and with its compression (keyring.py); the step of a key
rotation that leaves no blob under a key about to be dropped.

One walk (SCAN) reads every blob (the walk's script returns each value). A blob that is already
current (`Sealer.is_current`: sealed under the active key, compressed as set) is skipped, so a
second run, or one after an interruption, does only what is left. Any other blob is opened and
decoded; one that does not open with the keys or does not decode is refused and never
overwritten. The rest are sealed anew (the owner digest of the decoded owner, `fence.scope_of`)
and written with a compare-and-set on the very bytes read (lua/reseal.lua, pipelined per walk
batch). A blob changed meanwhile is read again and handled afresh, up to `RETRIES` times: a
store writing with the current settings has made it current (skipped), one with older settings
gets it resealed with its new content. So no concurrent write is lost.

The script also records the session user's pointer suffix in the meta key when it is missing:
a sealed blob hides its owner from the store's scripts (remove, touch), which then read the
pointer from there. Only counts are printed: never a key, an id or any content.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors

from ..fence import owner_slot, scope_of
from . import scripts
from .context import Context, ExitCode, Report, finish, table, walk_summary
from .layout import Kind
from .walk import Progress, Walker

__all__ = ["RETRIES", "BeforeWrite", "reseal"]

RETRIES = 5  # reads again after a compare-and-set miss, per session
WRITTEN, CHANGED, GONE, NOT_A_BLOB = 1, 0, -1, -2  # what lua/reseal.lua returns
LINE_EVERY = 1.0  # seconds between plain progress lines (stderr not a terminal)

# Called with each session key after its blob was read and sealed anew, before the
# compare-and-set: the seam tests use to write between the two.
BeforeWrite = Callable[[str], Awaitable[None]]


@dataclass
class _Write:
    key: str
    read: bytes  # the bytes the compare-and-set expects
    new: bytes
    suffix: str  # the session user's pointer suffix, '' for none


@dataclass
class _Tally:
    seen: int = 0
    resealed: int = 0  # written (dry run: would be)
    current: int = 0
    conflicts_retried: int = 0
    gave_up: int = 0
    vanished: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # per reason (no key, no content)

    @property
    def done(self) -> int:
        refused = sum(self.refused.values())
        return self.resealed + self.current + refused + self.gave_up + self.vanished


class _Lines:
    """Progress on stderr: the shared bar on a terminal; else a plain line at most every
    `LINE_EVERY` seconds, and always the last one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._shown = 0.0

    def update(self, tally: _Tally, *, last: bool = False) -> None:
        if self.progress.enabled:
            self.progress.update("reseal: sessions", tally.done, total=tally.seen)
            if last:
                self.progress.finish()
            return
        now = time.monotonic()
        if last or now - self._shown >= LINE_EVERY:
            self._shown = now
            self.progress.stream.write(f"reseal: {tally.done:,}/{tally.seen:,} sessions\n")
            self.progress.stream.flush()


class _Resealer:
    def __init__(self, ctx: Context, *, yes: bool, before_write: BeforeWrite | None) -> None:
        self.ctx = ctx
        self.yes = yes
        self.before_write = before_write
        self.sealer = ctx.sealing.sealer
        self.tally = _Tally()

    def prepare(self, key: str, raw: bytes) -> _Write | None:
        """The write that reseals `raw`, or None (counted) when it is current or refused."""
        if self.sealer.is_current(raw):
            self.tally.current += 1
            return None
        opened = self.ctx.open(key, raw)
        if opened.data is None or opened.plain is None:
            # The sealer's reasons name no content; the codec's might: not shown.
            reason = opened.problem if opened.sealed else None
            self.tally.refused[reason or "does not decode as SessionData (see check)"] += 1
            return None
        owner = scope_of(opened.data.tenant_ctx)
        new = self.sealer.seal(
            opened.plain, session_key=key, owner_digest=self.sealer.owner_digest(owner)
        )
        slot = owner_slot(owner)
        suffix = "" if slot is None else self.ctx.layout.keys.slot_suffix(slot)
        return _Write(key, raw, new, suffix)

    async def write(self, writes: list[_Write]) -> None:
        """Compare-and-set `writes`; read the misses again and retry, `RETRIES` times."""
        layout, conn = self.ctx.layout, self.ctx.conn
        for attempt in range(RETRIES + 1):
            if not writes:
                return
            if self.before_write is not None:
                for w in writes:
                    await self.before_write(w.key)
            pipe = conn.client.pipeline(transaction=False)
            for w in writes:
                blob = layout.full(layout.session_name(w.key))
                meta = layout.full(layout.meta_name(w.key))
                pipe.eval(scripts.RESEAL, 2, blob, meta, w.read, w.new, w.suffix)
            replies = await conn.call(pipe.execute, write=True)
            misses: list[_Write] = []
            for w, reply in zip(writes, replies, strict=True):
                status = int(reply)
                if status == WRITTEN:
                    self.tally.resealed += 1
                elif status == GONE:
                    self.tally.vanished += 1
                elif status == NOT_A_BLOB:
                    self.tally.refused["no longer a string key (see check)"] += 1
                else:
                    misses.append(w)
            if not misses:
                return
            if attempt == RETRIES:
                self.tally.gave_up += len(misses)
                return
            self.tally.conflicts_retried += len(misses)
            writes = await self.read_again(misses)

    async def read_again(self, misses: list[_Write]) -> list[_Write]:
        layout, conn = self.ctx.layout, self.ctx.conn
        pipe = conn.client.pipeline(transaction=False)
        for w in misses:
            pipe.get(layout.full(layout.session_name(w.key)))
        replies = await conn.call(pipe.execute, False)
        again: list[_Write] = []
        for w, raw in zip(misses, replies, strict=True):
            if raw is None:
                self.tally.vanished += 1
            elif isinstance(raw, redis_errors.ResponseError) and "WRONGTYPE" in str(raw):
                self.tally.refused["no longer a string key (see check)"] += 1
            elif isinstance(raw, redis_errors.RedisError):
                raise conn.error(raw, write=False)
            else:
                step = self.prepare(w.key, raw)
                if step is not None:
                    again.append(step)
        return again

    async def run(self) -> tuple[_Tally, Walker]:
        lines = _Lines(self.ctx.progress)
        # The walk's own bar stays off: this command shows sessions done of sessions found.
        quiet = Progress(self.ctx.progress.stream, enabled=False)
        walker = Walker(
            self.ctx.conn, self.ctx.layout, stop=self.ctx.stop, progress=quiet, label="reseal"
        )
        match = self.ctx.layout.keys.session_prefix + "*"
        try:
            async for batch in walker.batches(frozenset({Kind.SESSION}), match=match):
                writes: list[_Write] = []
                for entry in batch:
                    key = entry.parsed.session_key
                    self.tally.seen += 1
                    if entry.wrong_type or entry.value is None or key is None:
                        self.tally.refused["not a string key (see check)"] += 1
                        continue
                    step = self.prepare(key, entry.value)
                    if step is None:
                        continue
                    if self.yes:
                        writes.append(step)
                    else:
                        self.tally.resealed += 1  # would be
                await self.write(writes)
                lines.update(self.tally)
        finally:
            lines.update(self.tally, last=True)
        return self.tally, walker


async def reseal(ctx: Context, *, yes: bool, before_write: BeforeWrite | None = None) -> Report:
    """Reseal every session blob of the namespace (a dry run counting them unless `yes`);
    `before_write` is a test seam (see `BeforeWrite`)."""
    tally, walker = await _Resealer(ctx, yes=yes, before_write=before_write).run()
    refused = sum(tally.refused.values())
    result: dict[str, Any] = {
        **walk_summary(walker),
        "dry_run": not yes,
        "sessions": tally.seen,
        "resealed": tally.resealed,
        "already_current": tally.current,
        "refused": refused,
        "refused_reasons": dict(tally.refused),
        "conflicts_retried": tally.conflicts_retried,
        "gave_up": tally.gave_up,
        "vanished": tally.vanished,
    }
    verb = "resealed" if yes else "to reseal"
    rows: list[tuple[str, int]] = [
        ("sessions", tally.seen),
        (verb, tally.resealed),
        ("already current (skipped)", tally.current),
        ("refused (left as they are)", refused),
    ]
    if yes:
        rows += [
            ("conflicts retried (changed meanwhile)", tally.conflicts_retried),
            ("gave up (changed on every try)", tally.gave_up),
            ("gone meanwhile", tally.vanished),
        ]
    lines = table(["what", "count"], rows)
    lines += [f"refused {n}: {reason}" for reason, n in sorted(tally.refused.items())]
    if not ctx.sealing.keyed:
        lines.append("no key ring given: blobs are written unencrypted")
    if yes:
        lines.append("running it again skips what is current (resumable)")
    else:
        lines.append("dry run: nothing was written; run again with --yes")
    code = ExitCode.PROBLEMS if refused or tally.gave_up else ExitCode.OK
    return finish(Report(code, result, lines), walker)
