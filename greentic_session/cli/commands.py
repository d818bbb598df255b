"""The commands. Each returns a `Report`: an exit code, a JSON-able result, the lines of its
table, and an optional one-line message for stderr. Printing is `app`'s business."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import IO, Any, NamedTuple

import msgspec
from redis import exceptions as redis_errors

from ..codec import decode_session_data
from ..errors import InvalidInputError, SessionError
from ..fence import UserSlot, check_key
from ..schema import SessionData, validate_identifier
from . import repairs
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
from .walk import Connection, Entry, Progress, Stop, Walker, as_text

__all__ = ["Context", "ExitCode", "Report"]


class ExitCode(IntEnum):
    """The exit codes a script can test (documented in `--help` and docs/cli.md)."""

    OK = 0
    PROBLEMS = 1  # check found problems; records skipped; deletions refused (changed meanwhile)
    USAGE = 2  # bad arguments or bad input; nothing was written
    UNAVAILABLE = 3  # cannot connect, authenticate, or Redis failed mid-way
    NOT_FOUND = 4  # get/find: no such session
    INTERRUPTED = 130  # Ctrl-C: the summary so far was printed


@dataclass
class Report:
    code: int
    result: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    message: str | None = None  # one line for stderr


@dataclass
class Context:
    conn: Connection
    layout: Layout
    stop: Stop
    progress: Progress

    def walker(self, label: str) -> Walker:
        return Walker(self.conn, self.layout, stop=self.stop, progress=self.progress, label=label)


BATCH = 1000


# -- output helpers --------------------------------------------------------------------------


def table(headers: list[str], rows: Iterable[Iterable[object]]) -> list[str]:
    cells = [headers, *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _team(team: str | None) -> str:
    return "-" if team is None else team


def _owner(data: SessionData) -> tuple[str, str, str]:
    ctx = data.tenant_ctx
    return (ctx.env, ctx.tenant_id, _team(ctx.normalized_team))


def _slot_owner(slot: UserSlot) -> tuple[str, str, str]:
    return (slot.env, slot.tenant_id, _team(slot.team))


def _try_decode(blob: bytes) -> tuple[SessionData | None, str | None]:
    try:
        return decode_session_data(blob), None
    except InvalidInputError as exc:
        return None, exc.message


def _chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ms(pttl: int | None) -> str:
    return "none" if pttl is None else f"{pttl / 1000:.1f}s"


# Histogram buckets: (upper bound, label).
SIZE_BUCKETS = [
    (256, "<256B"),
    (1024, "<1KiB"),
    (4096, "<4KiB"),
    (16384, "<16KiB"),
    (65536, "<64KiB"),
    (262144, "<256KiB"),
    (1 << 20, "<1MiB"),
]
TTL_BUCKETS = [
    (60_000, "<1m"),
    (600_000, "<10m"),
    (3_600_000, "<1h"),
    (86_400_000, "<1d"),
    (604_800_000, "<7d"),
]


def _bucket(value: int, buckets: list[tuple[int, str]], top: str) -> str:
    for bound, label in buckets:
        if value < bound:
            return label
    return top


# -- get / find ------------------------------------------------------------------------------


async def _show(ctx: Context, key: str) -> Report:
    layout, client = ctx.layout, ctx.conn.client
    pipe = client.pipeline(transaction=False)
    pipe.get(layout.full(layout.session_name(key)))
    pipe.pttl(layout.full(layout.session_name(key)))
    pipe.get(layout.full(layout.meta_name(key)))
    pipe.pttl(layout.full(layout.meta_name(key)))
    replies = await ctx.conn.call(pipe.execute, False)
    for reply in replies:
        if isinstance(reply, redis_errors.ResponseError) and "WRONGTYPE" in str(reply):
            return Report(
                ExitCode.PROBLEMS,
                {"key": key, "found": True, "wrong_type": True},
                message="a key of this session holds the wrong type of value (see `check`)",
            )
        if isinstance(reply, redis_errors.RedisError):
            raise ctx.conn.error(reply, write=False)
    blob, pttl, meta, meta_pttl = replies
    if blob is None:
        return Report(
            ExitCode.NOT_FOUND, {"key": key, "found": False}, message="no session with that key"
        )
    result: dict[str, Any] = {
        "key": key,
        "found": True,
        "pttl": None if pttl < 0 else pttl,
        "size": len(blob),
    }
    if meta is not None:
        result["meta"] = {
            "value": meta.decode(errors="replace"),
            "pttl": None if meta_pttl < 0 else meta_pttl,
        }
    data, problem = _try_decode(blob)
    if data is None:
        result["corrupt"] = problem
        lines = table(["field", "value"], [("key", key), ("size", len(blob)), ("corrupt", problem)])
        return Report(ExitCode.PROBLEMS, result, lines, message="the stored blob is corrupt")
    ctx_ = data.tenant_ctx
    user = ctx_.normalized_user
    if user is not None:
        slot = UserSlot(ctx_.env, ctx_.tenant_id, ctx_.normalized_team, user)
        pointer = await ctx.conn.call(client.get, layout.full(layout.pointer_name(slot)))
        result["pointer"] = {
            "key": layout.pointer_name(slot),
            "points_here": pointer is not None and as_text(pointer) == key,
        }
    result["data"] = json.loads(blob)
    rows: list[tuple[str, object]] = [
        ("key", key),
        ("expires in", _ms(result["pttl"])),
        ("size", f"{len(blob)} B"),
        ("env", ctx_.env),
        ("tenant", ctx_.tenant_id),
        ("team", _team(ctx_.normalized_team)),
        ("user", _team(user)),
        ("flow", data.flow_id),
        ("node", data.cursor.node_pointer),
    ]
    if "pointer" in result:
        rows.append(
            (
                "user pointer",
                "points here"
                if result["pointer"]["points_here"]
                else "points elsewhere or is missing",
            )
        )
    if "meta" in result:
        rows.append(("meta expires in", _ms(result["meta"]["pttl"])))
    lines = [*table(["field", "value"], rows), "", json.dumps(result["data"], indent=2)]
    return Report(ExitCode.OK, result, lines)


async def get(ctx: Context, key: str) -> Report:
    check_key(key)
    return await _show(ctx, key)


async def find(ctx: Context, env: str, tenant: str, team: str | None, user: str) -> Report:
    slot = UserSlot(
        validate_identifier(env, "env"),
        validate_identifier(tenant, "tenant"),
        None if team in (None, "-") else validate_identifier(team, "team"),
        validate_identifier(user, "user"),
    )
    name = ctx.layout.pointer_name(slot)
    try:
        target = await ctx.conn.client.get(ctx.layout.full(name))
    except redis_errors.ResponseError as exc:
        if "WRONGTYPE" in str(exc):
            return Report(
                ExitCode.PROBLEMS,
                {"pointer": name, "wrong_type": True},
                message="the user pointer key holds the wrong type of value",
            )
        raise ctx.conn.error(exc, write=False) from None
    except redis_errors.RedisError as exc:
        raise ctx.conn.error(exc, write=False) from None
    if target is None:
        return Report(
            ExitCode.NOT_FOUND,
            {"pointer": name, "found": False},
            message="no session pointer for that user",
        )
    report = await _show(ctx, as_text(target))
    report.result["pointer"] = {"key": name, "points_here": True}
    if report.code == ExitCode.NOT_FOUND:
        report.message = (
            "the user pointer names a session that no longer exists "
            "(an orphan: `check --repair` removes it)"
        )
    return report


# -- stats / check ---------------------------------------------------------------------------


class Census:
    """What a walk saw: counts for `stats`, problems for `check`."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.sessions: Counter[tuple[str, str, str]] = Counter()
        self.refs: Counter[tuple[str, str, str]] = Counter()
        self.sizes: Counter[str] = Counter()
        self.ttls: Counter[str] = Counter()
        self.session_keys: set[str] = set()
        self.naming: dict[str, list[tuple[Entry, str | None]]] = defaultdict(list)
        self.corrupt: list[tuple[Entry, str]] = []
        self.wrong_type: list[Entry] = []
        self.orphans: list[tuple[Entry, str, str | None]] = []  # entry, session key, member

    def add(self, entry: Entry) -> None:
        self.kinds[entry.kind] += 1
        if entry.wrong_type:
            self.wrong_type.append(entry)
            return
        key = entry.parsed.session_key
        if entry.kind is Kind.SESSION and key is not None and entry.value is not None:
            self.session_keys.add(key)
            self.sizes[_bucket(len(entry.value), SIZE_BUCKETS, ">=1MiB")] += 1
            self.ttls[
                "none" if entry.pttl is None else _bucket(entry.pttl, TTL_BUCKETS, ">=7d")
            ] += 1
            data, problem = _try_decode(entry.value)
            if data is None:
                self.corrupt.append((entry, problem or "undecodable"))
            else:
                self.sessions[_owner(data)] += 1
        elif entry.kind in COMPANION_KINDS and key is not None:
            self.naming[key].append((entry, None))
        elif entry.slot is not None:
            self.refs[_slot_owner(entry.slot)] += 1
            if entry.members is not None:
                for member in entry.members:
                    self.naming[member].append((entry, member))
            elif entry.value is not None:
                self.naming[entry.value.decode(errors="replace")].append((entry, None))

    async def find_orphans(self, ctx: Context, targets: Iterable[str] | None = None) -> None:
        """Confirm, with EXISTS now, that the sessions the candidates name are gone."""
        if targets is None:
            targets = [key for key in self.naming if key not in self.session_keys]
        for chunk in _chunks(list(targets)):
            pipe = ctx.conn.client.pipeline(transaction=False)
            for key in chunk:
                pipe.exists(ctx.layout.full(ctx.layout.session_name(key)))
            found = await ctx.conn.call(pipe.execute)
            for key, exists in zip(chunk, found, strict=True):
                if not exists:
                    self.orphans.extend((e, key, m) for e, m in self.naming.get(key, ()))


def _walk_summary(walker: Walker) -> dict[str, Any]:
    return {
        "scanned": walker.scanned,
        "vanished": walker.vanished,
        "interrupted": walker.interrupted,
    }


async def _census(ctx: Context, label: str) -> tuple[Census, Walker]:
    census = Census()
    walker = ctx.walker(label)
    async for batch in walker.batches():
        for entry in batch:
            census.add(entry)
    if not walker.interrupted:
        await census.find_orphans(ctx)
    return census, walker


async def stats(ctx: Context) -> Report:
    census, walker = await _census(ctx, "stats: keys")
    owners = sorted(set(census.sessions) | set(census.refs))
    result: dict[str, Any] = {
        **_walk_summary(walker),
        "kinds": {str(kind): census.kinds.get(kind, 0) for kind in Kind},
        "owners": [
            {
                "env": o[0],
                "tenant": o[1],
                "team": o[2],
                "sessions": census.sessions[o],
                "refs": census.refs[o],
            }
            for o in owners
        ],
        "blob_sizes": dict(census.sizes),
        "ttls": dict(census.ttls),
        "orphans": len(census.orphans),
        "corrupt": len(census.corrupt),
        "wrong_type": len(census.wrong_type),
    }
    size_order = [label for _, label in SIZE_BUCKETS] + [">=1MiB"]
    ttl_order = [label for _, label in TTL_BUCKETS] + [">=7d", "none"]
    sections = [
        (["kind", "keys"], list(result["kinds"].items())),
        (
            ["env", "tenant", "team", "sessions", "pointers+waits"],
            [(*o, census.sessions[o], census.refs[o]) for o in owners],
        ),
        (["blob size", "sessions"], [(b, census.sizes[b]) for b in size_order if census.sizes[b]]),
        (["expires in", "sessions"], [(b, census.ttls[b]) for b in ttl_order if census.ttls[b]]),
        (
            ["problem", "keys"],
            [
                ("orphan references", result["orphans"]),
                ("corrupt blobs", result["corrupt"]),
                ("wrong-type keys", result["wrong_type"]),
            ],
        ),
    ]
    lines: list[str] = []
    for headers, rows in sections:
        if rows:  # an empty namespace has no owners, sizes or expiries to show
            lines += [*([""] if lines else []), *table(headers, rows)]
    return _finish(Report(ExitCode.OK, result, lines), walker)


def _finish(report: Report, walker: Walker) -> Report:
    if walker.interrupted:
        report.lines.append("(interrupted: the figures cover the keys walked so far)")
        report.code = ExitCode.INTERRUPTED
        report.message = "interrupted"
    return report


DELETED, KEPT, GONE = 1, 0, -1  # what the compare-and-delete scripts return


class CompareDelete:
    """Compare-and-delete calls sent in pipelined batches (writes: never retried)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pending: list[tuple[str, list[str], Sequence[bytes | str], Any]] = []
        self.outcomes: list[tuple[Any, int]] = []  # (tag, DELETED | KEPT | GONE)

    async def add(
        self, script: str, keys: list[str], args: Sequence[bytes | str], tag: Any
    ) -> None:
        self.pending.append((script, keys, args, tag))
        if len(self.pending) >= BATCH:
            await self.flush()

    async def flush(self) -> list[tuple[Any, int]]:
        if self.pending:
            pipe = self.ctx.conn.client.pipeline(transaction=False)
            for script, keys, args, _ in self.pending:
                # EVAL, not EVALSHA: no NOSCRIPT round trip; Redis caches the compiled body.
                pipe.eval(getattr(repairs, script), len(keys), *keys, *args)
            replies = await self.ctx.conn.call(pipe.execute, write=True)
            self.outcomes += [(p[3], int(r)) for p, r in zip(self.pending, replies, strict=True)]
            self.pending = []
        return self.outcomes

    def count(self, outcome: int) -> int:
        return sum(status == outcome for _, status in self.outcomes)


def _problem_rows(census: Census) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rows += [{"problem": "corrupt blob", "key": e.name, "detail": why} for e, why in census.corrupt]
    rows += [
        {
            "problem": "wrong type",
            "key": e.name,
            "detail": f"{e.type_name}, expected {'set' if e.kind is Kind.WAIT_SET else 'string'}",
        }
        for e in census.wrong_type
    ]
    rows += [
        {
            "problem": "orphan",
            "key": e.name,
            "detail": f"names missing session {key!r}" + (" (set member)" if m else ""),
        }
        for e, key, m in census.orphans
    ]
    return rows


async def check(ctx: Context, *, repair: bool) -> Report:
    census, walker = await _census(ctx, "check: keys")
    problems = _problem_rows(census)
    result: dict[str, Any] = {**_walk_summary(walker), "problems": problems}
    remaining = len(problems)
    if repair and problems and not walker.interrupted:
        outcome = await _repair(ctx, census)
        result["repaired"] = outcome
        remaining = outcome["kept"]
    lines = (
        table(
            ["problem", "key", "detail"], [(p["problem"], p["key"], p["detail"]) for p in problems]
        )
        if problems
        else []
    )
    lines.append(f"{len(problems)} problem(s) in {walker.scanned} keys")
    if "repaired" in result:
        r = result["repaired"]
        lines.append(
            f"repaired {r['deleted']}; kept {r['kept']} that changed meanwhile; "
            f"{r['gone']} already gone; then {r['orphans_after']} orphan(s) of the deleted "
            "corrupt blobs repaired"
        )
    code = ExitCode.PROBLEMS if remaining else ExitCode.OK
    return _finish(Report(code, result, lines), walker)


async def _repair(ctx: Context, census: Census) -> dict[str, int]:
    layout = ctx.layout
    ops = CompareDelete(ctx)
    for entry, _ in census.corrupt:
        key = entry.parsed.session_key
        assert key is not None
        assert entry.value is not None
        await ops.add(
            "DELETE_IF_VALUE",
            [layout.full(entry.name), *map(layout.full, layout.companion_names(key))],
            [entry.value],
            ("corrupt", key),
        )
    for entry in census.wrong_type:
        await ops.add("DELETE_IF_TYPE", [layout.full(entry.name)], [entry.type_name], None)
    await _repair_orphans(ctx, ops, census.orphans)
    outcomes = await ops.flush()
    # The references to corrupt blobs just deleted are orphans now: repair them in the same run
    # (not their meta keys and wait hints: those went with the blobs).
    deleted_blobs = [tag[1] for tag, status in outcomes if status == DELETED and tag]
    census.orphans = []
    await census.find_orphans(ctx, deleted_blobs)
    after = CompareDelete(ctx)
    orphans = [o for o in census.orphans if o[0].kind not in COMPANION_KINDS]
    await _repair_orphans(ctx, after, orphans)
    await after.flush()
    return {
        "deleted": ops.count(DELETED),
        "kept": ops.count(KEPT) + after.count(KEPT),
        "gone": ops.count(GONE) + after.count(GONE),
        "orphans_after": after.count(DELETED),
    }


async def _repair_orphans(
    ctx: Context, ops: CompareDelete, orphans: list[tuple[Entry, str, str | None]]
) -> None:
    layout = ctx.layout
    for entry, key, member in orphans:
        keys = [layout.full(entry.name), layout.full(layout.session_name(key))]
        if member is not None:
            await ops.add("REMOVE_ORPHAN_MEMBER", keys, [member], None)
        else:
            assert entry.value is not None
            await ops.add("DELETE_ORPHAN", keys, [entry.value], None)


# -- purge -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    env: str | None
    tenant: str | None
    team: str | None  # "-" selects sessions without a team
    user: str | None

    def matches(self, env: str, tenant: str, team: str | None, user: str | None) -> bool:
        return (
            (self.env is None or self.env == env)
            and (self.tenant is None or self.tenant == tenant)
            and (self.team is None or self.team == _team(team))
            and (self.user is None or self.user == user)
        )


def selector(env: str | None, tenant: str | None, team: str | None, user: str | None) -> Selector:
    if env is None and tenant is None and team is None and user is None:
        raise InvalidInputError("purge needs at least one of --env, --tenant, --team, --user")
    for value, what in ((env, "env"), (tenant, "tenant"), (team, "team"), (user, "user")):
        if value is not None:
            validate_identifier(value, what)
    return Selector(env, tenant, team, user)


def _purge_step(
    layout: Layout, entry: Entry, chosen: Selector
) -> tuple[str, list[str], Sequence[bytes | str]] | None:
    """The compare-and-delete call that purges `entry`, or None if it is not selected."""
    if entry.kind is Kind.SESSION:
        data = _try_decode(entry.value)[0] if entry.value is not None else None
        key = entry.parsed.session_key
        if data is None or key is None or entry.value is None:
            return None
        t = data.tenant_ctx
        if not chosen.matches(t.env, t.tenant_id, t.normalized_team, t.normalized_user):
            return None
        keys = [layout.full(entry.name), *map(layout.full, layout.companion_names(key))]
        return "DELETE_IF_VALUE", keys, [entry.value]
    slot = entry.slot
    if slot is None or not chosen.matches(slot.env, slot.tenant_id, slot.team, slot.user):
        return None
    if entry.kind is Kind.WAIT_SET:
        return "DELETE_IF_TYPE", [layout.full(entry.name)], ["set"]
    if entry.value is None:
        return None
    return "DELETE_IF_VALUE", [layout.full(entry.name)], [entry.value]


async def purge(ctx: Context, chosen: Selector, *, yes: bool) -> Report:
    walker = ctx.walker("purge: keys")
    ops = CompareDelete(ctx) if yes else None
    selected: Counter[str] = Counter()
    names: list[str] = []
    corrupt = 0
    kinds = (Kind.SESSION, Kind.POINTER, Kind.WAIT_SCOPE, Kind.WAIT_SET)
    async for batch in walker.batches(frozenset(kinds)):
        for entry in batch:
            if entry.wrong_type:
                continue  # `check` reports and repairs these
            step = _purge_step(ctx.layout, entry, chosen)
            if step is None:
                if entry.kind is Kind.SESSION and entry.value is not None:
                    corrupt += _try_decode(entry.value)[0] is None
                continue
            selected[entry.kind] += 1
            names.append(entry.name)
            if ops is not None:
                await ops.add(*step, None)
    if ops is not None:
        await ops.flush()
    deleted = ops.count(DELETED) if ops is not None else 0
    kept = ops.count(KEPT) if ops is not None else 0
    result: dict[str, Any] = {
        **_walk_summary(walker),
        "dry_run": not yes,
        "selected": {str(kind): selected.get(kind, 0) for kind in kinds},
        "keys": names,
        "deleted": deleted,
        "kept_changed": kept,
        "skipped_corrupt": corrupt,
    }
    lines = table(["kind", "selected"], result["selected"].items())
    if yes:
        lines.append(f"deleted {deleted} key(s); kept {kept} that changed meanwhile")
    else:
        lines.append(f"dry run: {len(names)} key(s) would be deleted; run again with --yes")
    if corrupt:
        lines.append(f"{corrupt} corrupt blob(s) not examined (see `check`)")
    code = ExitCode.PROBLEMS if kept else ExitCode.OK
    return _finish(Report(code, result, lines), walker)


# -- export / import -------------------------------------------------------------------------


class ReferenceIndex:
    """Export's first walk: the meta key and the references of every session, by session key."""

    def __init__(self) -> None:
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

    def blob(self, entry: Entry) -> tuple[str, bytes, SessionData] | None:
        """A blob entry's session key, bytes and data, or None (and a note in `skipped`) when it
        is of the wrong type or corrupt."""
        key = entry.parsed.session_key
        if entry.wrong_type or entry.value is None or key is None:
            self.skipped.append(f"wrong-type key {entry.name} ({entry.type_name})")
            return None
        data, problem = _try_decode(entry.value)
        if data is None:
            self.skipped.append(f"corrupt blob {entry.name}: {problem}")
            return None
        return key, entry.value, data

    def take(self, key: str) -> tuple[MetaRecord | None, MetaRecord | None, list[RefRecord]]:
        """Session `key`'s meta key, wait hint and references, removed from the index."""
        return self.metas.pop(key, None), self.hints.pop(key, None), self.refs.pop(key, [])

    def record(self, entry: Entry) -> bytes | None:
        """The export line for a blob entry, or None (and a note in `skipped`)."""
        found = self.blob(entry)
        if found is None:
            return None
        key, blob, _ = found
        meta, wait_hint, refs = self.take(key)
        record = SessionRecord(
            key=key,
            pttl=entry.pttl,
            data=embed_blob(blob),
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
    index = ReferenceIndex()
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
                steps = _import_steps(ctx.layout, batch)
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


def _import_steps(layout: Layout, batch: list[SessionRecord]) -> ImportBatch:
    """The IMPORT script's arguments for `batch`.

    Every step sets an absolute state (SET with or without PX; SADD then PEXPIRE or PERSIST),
    so writing the same record twice leaves the same state.
    """
    ops: list[str] = []
    fields: list[bytes] = []
    owners: list[int] = []

    def step(op: str, name: str, value: bytes | str, pttl: int | None, record: int) -> None:
        ops.append(op)
        value = value.encode() if isinstance(value, str) else value
        fields.extend((layout.full(name).encode(), value, b"" if pttl is None else b"%d" % pttl))
        owners.append(record)

    for index, record in enumerate(batch):
        step("S", layout.session_name(record.key), bytes(record.data), record.pttl, index)
        for name, companion in (
            (layout.meta_name(record.key), record.meta),
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
    args: tuple[str, str, bytes, str]  # ARGV of repairs.IMPORT
    records: int


async def _write(ctx: Context, batch: ImportBatch) -> tuple[int, int]:
    """Run one batch's IMPORT script; returns (records written, records refused)."""
    refused = await ctx.conn.call(ctx.conn.client.eval, repairs.IMPORT, 0, *batch.args, write=True)
    return batch.records - len(refused), len(refused)


def session_error_code(exc: SessionError) -> int:
    from ..errors import NotFoundError, UnavailableError

    if isinstance(exc, InvalidInputError):
        return ExitCode.USAGE
    if isinstance(exc, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, UnavailableError) or exc.code.value in ("permission_denied",):
        return ExitCode.UNAVAILABLE
    return ExitCode.PROBLEMS
