"""`export` (every session as JSON Lines, in the format of records.py) and `import` (those lines
validated, then written). `index_references`, export's first walk, also serves copy-to-cluster.

Sealed stores: export writes each blob opened (the codec's JSON), so the file imports anywhere;
a blob that does not open with the run's keys is skipped and named. Import seals each record
with the run's settings (keys, compression), bound to its session key and the target namespace,
and, as a sealing store does, records the user pointer's suffix in the meta key (a sealed blob
hides its owner from the store's scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections import defaultdict
from collections.abc import Callable
from typing import IO, NamedTuple

import msgspec

from ..codec import decode_session_data
from ..errors import InvalidInputError, SessionError
from ..fence import owner_slot, scope_of
from ..schema import SessionData
from . import scripts
from .context import BATCH, Context, ExitCode, Opened, Report
from .layout import COMPANION_KINDS, Kind, Layout
from .records import (
    MetaRecord,
    RefRecord,
    SessionRecord,
    decode_record,
    embed_blob,
    encode_record,
    validate_record,
)
from .walk import Entry, Walker

__all__ = ["Blob", "ReferenceIndex", "export", "import_", "index_references"]


class Blob(NamedTuple):
    """A session blob the walk read and opened."""

    key: str
    raw: bytes  # as stored
    plain: bytes | None  # the codec's JSON (`raw` itself when not sealed); None: unopened
    data: SessionData | None  # None only for a sealed blob (`blob(..., unopened=True)`)


class ReferenceIndex:
    """Export's first walk: the meta key and the references of every session, by session key."""

    def __init__(self, opener: Callable[[str, bytes], Opened]) -> None:
        self.opener = opener
        self.metas: dict[str, MetaRecord] = {}
        self.hints: dict[str, MetaRecord] = {}
        self.refs: dict[str, list[RefRecord]] = defaultdict(list)
        self.skipped: list[str] = []

    def add(self, entry: Entry) -> None:
        if entry.wrong_type:
            self.skipped.append(f"wrong-type key {entry.name} ({entry.type_name})")
        elif entry.kind in COMPANION_KINDS:
            if entry.value is not None and entry.parsed.session_key is not None:
                value = entry.value.decode(errors="replace")
                kept = self.metas if entry.kind is Kind.META else self.hints
                kept[entry.parsed.session_key] = MetaRecord(value, entry.pttl)
        elif entry.members is not None:
            for member in entry.members:
                self.refs[member].append(RefRecord(entry.name, entry.pttl))
        elif entry.value is not None:
            target = entry.value.decode(errors="replace")
            self.refs[target].append(RefRecord(entry.name, entry.pttl))

    def blob(self, entry: Entry, *, unopened: bool = False) -> Blob | None:
        """A blob entry opened, or None (and a note in `skipped`) when it is of the wrong type,
        does not open with the run's keys (unless `unopened`: then without its data), or is
        corrupt."""
        key = entry.parsed.session_key
        if entry.wrong_type or entry.value is None or key is None:
            self.skipped.append(f"wrong-type key {entry.name} ({entry.type_name})")
            return None
        opened = self.opener(key, entry.value)
        if unopened and opened.sealed:
            return Blob(key, entry.value, None, None)
        if opened.data is None or opened.plain is None:
            what = "sealed blob that does not open" if opened.sealed else "corrupt blob"
            self.skipped.append(f"{what} {entry.name}: {opened.problem}")
            return None
        return Blob(key, entry.value, opened.plain, opened.data)

    def take(self, key: str) -> tuple[MetaRecord | None, MetaRecord | None, list[RefRecord]]:
        """Session `key`'s meta key, wait hint and references, removed from the index."""
        return self.metas.pop(key, None), self.hints.pop(key, None), self.refs.pop(key, [])

    def record(self, entry: Entry) -> bytes | None:
        """The export line for a blob entry, or None (and a note in `skipped`)."""
        found = self.blob(entry)
        if found is None or found.plain is None:
            return None
        meta, wait_hint, refs = self.take(found.key)
        record = SessionRecord(
            key=found.key,
            pttl=entry.pttl,
            data=embed_blob(found.plain),
            meta=meta,
            wait_hint=wait_hint,
            refs=refs,
        )
        return encode_record(record)

    @property
    def leftover(self) -> int:
        companions = len(self.metas) + len(self.hints)
        return companions + sum(len(refs) for refs in self.refs.values())


async def index_references(ctx: Context, label: str) -> tuple[ReferenceIndex, Walker]:
    """The first walk of `export` and `copy-to-cluster`: every meta key, wait hint, pointer and
    wait key, indexed by the session it names."""
    index = ReferenceIndex(ctx.open)
    walker = ctx.walker(label)
    async for batch in walker.batches(
        frozenset({*COMPANION_KINDS, Kind.POINTER, Kind.WAIT_SCOPE, Kind.WAIT_SET})
    ):
        for entry in batch:
            index.add(entry)
    return index, walker


async def export(ctx: Context, sink: IO[bytes], err: IO[str]) -> Report:
    """Two walks: the references (small, indexed in memory), then the blobs (streamed out)."""
    index, first = await index_references(ctx, "export: indexing")
    exported = 0
    second = ctx.walker("export: sessions")
    if not first.interrupted:
        match = ctx.layout.keys.session_prefix + "*"
        async for batch in second.batches(frozenset({Kind.SESSION}), match=match):
            lines = [line for line in map(index.record, batch) if line is not None]
            if lines:
                sink.write(b"\n".join(lines) + b"\n")
                exported += len(lines)
    sink.flush()
    for line in index.skipped:
        err.write(f"greentic-session: skipped {line}\n")
    interrupted = first.interrupted or second.interrupted
    orphans = 0 if interrupted else index.leftover
    skipped = len(index.skipped)
    result = {
        "exported": exported,
        "skipped": skipped,
        "orphan_refs_not_exported": orphans,
        "scanned": first.scanned + second.scanned,
        "interrupted": interrupted,
    }
    line = (
        f"exported {exported} session(s); skipped {skipped}; "
        f"{orphans} orphan reference(s) not exported"
    )
    report = Report(ExitCode.PROBLEMS if skipped else ExitCode.OK, result, [line])
    if interrupted:
        report.lines.append("(interrupted: the output holds the sessions exported so far)")
        report.code = ExitCode.INTERRUPTED
        report.message = "interrupted"
    return report


def _validate_input(source: IO[bytes], layout: Layout, spool: IO[bytes]) -> int:
    """Check every line before anything is written; copy the good ones to `spool`."""
    count = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            validate_record(decode_record(line), layout)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"line {number}: not an export record: {exc}") from None
        except msgspec.DecodeError:
            raise InvalidInputError(f"line {number}: not a JSON object") from None
        except InvalidInputError as exc:
            raise InvalidInputError(f"line {number}: {exc.message}") from None
        spool.write(line if line.endswith(b"\n") else line + b"\n")
        count += 1
    spool.seek(0)
    return count


async def import_(ctx: Context, source: IO[bytes]) -> Report:
    """Validate the whole input, then write it; see `docs/cli.md` for what a write does.

    One batch is in flight while the next is prepared, so Redis and this process overlap.
    """
    with tempfile.TemporaryFile() as spool:
        total = _validate_input(source, ctx.layout, spool)
        imported = failed = 0
        interrupted = ctx.stop.requested  # Ctrl-C while reading: write nothing
        in_flight: asyncio.Task[tuple[int, int]] | None = None
        batch: list[SessionRecord] = []
        try:
            for line in [] if interrupted else itertools.chain(spool, [None]):
                if line is not None:
                    batch.append(decode_record(line))
                    if len(batch) < BATCH // 2:
                        continue
                if not batch:
                    break
                steps = _import_steps(ctx, batch)
                if in_flight is not None:
                    ok, bad = await in_flight
                    imported, failed = imported + ok, failed + bad
                    ctx.progress.update("import: sessions", imported, imported / max(total, 1))
                in_flight, batch = asyncio.create_task(_write(ctx, steps)), []
                if ctx.stop.requested:
                    interrupted = True
                    break
            if in_flight is not None:
                ok, bad = await in_flight
                imported, failed, in_flight = imported + ok, failed + bad, None
        finally:
            if in_flight is not None:
                in_flight.cancel()
                with contextlib.suppress(asyncio.CancelledError, SessionError):
                    await in_flight
            ctx.progress.finish()
    result = {"records": total, "imported": imported, "failed": failed, "interrupted": interrupted}
    lines = [f"imported {imported} of {total} session(s); {failed} failed"]
    code = ExitCode.PROBLEMS if failed else ExitCode.OK
    report = Report(code, result, lines)
    if interrupted:
        report.lines.append("(interrupted: importing the same input again completes it)")
        report.code = ExitCode.INTERRUPTED
        report.message = "interrupted"
    return report


def _sealed_record(ctx: Context, record: SessionRecord) -> tuple[bytes, MetaRecord | None]:
    """`record`'s blob sealed with the run's settings, and its meta key: as a sealing store
    keeps it, holding the pointer suffix of the session's user (or else of the user pointer the
    record names), with the blob's expiry, when the record brings none."""
    sealer = ctx.sealing.sealer
    plain = bytes(record.data)
    owner = scope_of(decode_session_data(plain).tenant_ctx)
    blob = sealer.seal(plain, session_key=record.key, owner_digest=sealer.owner_digest(owner))
    meta = record.meta
    if meta is None or not meta.value:
        slot = owner_slot(owner)
        if slot is None:
            pointers = [ctx.layout.parse(ref.key) for ref in record.refs]
            slot = next((p.slot for p in pointers if p.kind is Kind.POINTER), None)
        if slot is not None:  # an empty meta value keeps its expiry (a lifetime's end)
            pttl = record.pttl if meta is None else meta.pttl
            meta = MetaRecord(ctx.layout.keys.slot_suffix(slot), pttl)
    return blob, meta


def _import_steps(ctx: Context, batch: list[SessionRecord]) -> ImportBatch:
    """The IMPORT script's arguments for `batch`.

    Every step sets an absolute state (SET with or without PX; SADD then PEXPIRE or PERSIST),
    so writing the same record twice leaves the same state (sealed anew, with a new nonce).
    """
    layout = ctx.layout
    sealing = not ctx.sealing.sealer.identity
    ops: list[str] = []
    fields: list[bytes] = []
    owners: list[int] = []

    def step(op: str, name: str, value: bytes | str, pttl: int | None, record: int) -> None:
        ops.append(op)
        value = value.encode() if isinstance(value, str) else value
        fields.extend((layout.full(name).encode(), value, b"" if pttl is None else b"%d" % pttl))
        owners.append(record)

    for index, record in enumerate(batch):
        blob, meta = _sealed_record(ctx, record) if sealing else (bytes(record.data), record.meta)
        step("S", layout.session_name(record.key), blob, record.pttl, index)
        for name, companion in (
            (layout.meta_name(record.key), meta),
            (layout.hint_name(record.key), record.wait_hint),
        ):
            if companion is None:
                step("D", name, "", None, index)
            else:
                step("S", name, companion.value, companion.pttl, index)
        for ref in record.refs:
            op = "A" if layout.parse(ref.key).kind is Kind.WAIT_SET else "S"
            step(op, ref.key, record.key, ref.pttl, index)
    lengths = ",".join([str(len(f)) for f in fields])
    return ImportBatch(
        ("".join(ops), lengths, b"".join(fields), ",".join(map(str, owners))), len(batch)
    )


class ImportBatch(NamedTuple):
    args: tuple[str, str, bytes, str]  # ARGV of scripts.IMPORT
    records: int


async def _write(ctx: Context, batch: ImportBatch) -> tuple[int, int]:
    """Run one batch's IMPORT script; returns (records written, records refused)."""
    refused = await ctx.conn.call(ctx.conn.client.eval, scripts.IMPORT, 0, *batch.args, write=True)
    return batch.records - len(refused), len(refused)
