"""The commands that delete: `check` (and `check --repair`), `purge` and `erase-user`.

Every deletion of check and purge is a compare-and-delete script (scripts.py, lua/) that first
checks the key is still what the walk read, sent in pipelined batches by `CompareDelete`;
erase-user calls the store's own `erase_user`, which checks each blob's owner as it deletes it.
Blobs are opened with the run's keys (`Context.open`); one that does not open is reported by
check, never repaired, and neither selected by purge nor counted by erase-user's dry run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.redis.store import RedisSessionStore
from ..errors import InvalidInputError
from ..fence import NO_TEAM
from ..schema import TenantCtx, validate_identifier
from . import scripts
from .census import Census, take_census
from .context import (
    BATCH,
    Context,
    ExitCode,
    Report,
    finish,
    table,
    team_label,
    walk_summary,
)
from .layout import COMPANION_KINDS, Kind
from .walk import Entry

__all__ = ["CompareDelete", "Selector", "check", "erase_user", "purge", "selector"]

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
                pipe.eval(getattr(scripts, script), len(keys), *keys, *args)
            replies = await self.ctx.conn.call(pipe.execute, write=True)
            self.outcomes += [(p[3], int(r)) for p, r in zip(self.pending, replies, strict=True)]
            self.pending = []
        return self.outcomes

    def count(self, outcome: int) -> int:
        return sum(status == outcome for _, status in self.outcomes)


# -- check / repair --------------------------------------------------------------------------


def _problem_rows(census: Census) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rows += [{"problem": "corrupt blob", "key": e.name, "detail": why} for e, why in census.corrupt]
    rows += [
        {"problem": "does not open", "key": e.name, "detail": why} for e, why in census.unopened
    ]
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
    census, walker = await take_census(ctx, "check: keys")
    problems = _problem_rows(census)
    result: dict[str, Any] = {**walk_summary(walker), "problems": problems}
    remaining = len(problems)
    if repair and problems and not walker.interrupted:
        outcome = await _repair(ctx, census)
        result["repaired"] = outcome
        # A blob that does not open may hold good data under a key this run lacks: kept.
        remaining = outcome["kept"] + len(census.unopened)
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
        if census.unopened:
            lines.append(
                f"left {len(census.unopened)} blob(s) that do not open: never repaired "
                "(give the keys that sealed them)"
            )
    code = ExitCode.PROBLEMS if remaining else ExitCode.OK
    return finish(Report(code, result, lines), walker)


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
            and (self.team is None or self.team == team_label(team))
            and (self.user is None or self.user == user)
        )


def selector(env: str | None, tenant: str | None, team: str | None, user: str | None) -> Selector:
    if env is None and tenant is None and team is None and user is None:
        raise InvalidInputError("purge needs at least one of --env, --tenant, --team, --user")
    for value, what in ((env, "env"), (tenant, "tenant"), (team, "team"), (user, "user")):
        if value is not None:
            validate_identifier(value, what)
    return Selector(env, tenant, team, user)


def _unreadable(ctx: Context, entry: Entry) -> bool:
    """Whether `entry` is a session blob whose content this run cannot read."""
    key = entry.parsed.session_key
    if entry.kind is not Kind.SESSION or entry.value is None or key is None:
        return False
    return ctx.open(key, entry.value).data is None


def _purge_step(
    ctx: Context, entry: Entry, chosen: Selector
) -> tuple[str, list[str], Sequence[bytes | str]] | None:
    """The compare-and-delete call that purges `entry`, or None if it is not selected."""
    layout = ctx.layout
    if entry.kind is Kind.SESSION:
        key = entry.parsed.session_key
        data = (
            ctx.open(key, entry.value).data if entry.value is not None and key is not None else None
        )
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
            step = _purge_step(ctx, entry, chosen)
            if step is None:
                corrupt += _unreadable(ctx, entry)
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
        **walk_summary(walker),
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
        lines.append(f"{corrupt} corrupt or unopened blob(s) not examined (see `check`)")
    code = ExitCode.PROBLEMS if kept else ExitCode.OK
    return finish(Report(code, result, lines), walker)


# -- erase-user ------------------------------------------------------------------------------


async def erase_user(
    ctx: Context, env: str, tenant: str, team: str | None, user: str, *, yes: bool
) -> Report:
    """Erase `user`'s sessions, pointers and waits in env/tenant/team (`team` None or "-": no
    team) with the store's `erase_user`, called with an operator context; without `yes`, count
    what it would erase. The report never holds the user id (only counts and where)."""
    team = None if team is None or team == NO_TEAM else validate_identifier(team, "team")
    operator = TenantCtx.new(
        validate_identifier(env, "env"), validate_identifier(tenant, "tenant"), team=team
    )
    validate_identifier(user, "user")
    where = f"env {env}, tenant {tenant}, team {team_label(team)}"
    result: dict[str, Any] = {"dry_run": not yes, "env": env, "tenant": tenant}
    result["team"] = team_label(team)
    if not yes:
        return await _erase_dry_run(ctx, Selector(env, tenant, team_label(team), user), result)
    # The store's erase does not watch `ctx.stop`: Ctrl-C interrupts it at once (exit 130);
    # each session goes in one atomic step, so running the command again is safe.
    ctx.stop.uninstall()
    # With the run's keys: the store's script compares a sealed blob's owner digest.
    store = RedisSessionStore(
        ctx.conn.client,
        namespace=ctx.layout.namespace,
        socket_timeout=ctx.conn.timeout,
        encryption=ctx.sealing.encryption,
        compression=ctx.sealing.compression,
    )
    try:
        erased = await store.erase_user(operator, user)
    finally:
        await store.aclose()
    result["erased"] = erased
    lines = [f"erased {erased} session(s) of that user in {where}, with its pointers and waits"]
    return Report(ExitCode.OK, result, lines)


async def _erase_dry_run(ctx: Context, chosen: Selector, result: dict[str, Any]) -> Report:
    """Count the sessions and the user's pointer and wait keys an erase would delete (purge's
    selection by owner; blobs that fail to decode are left alone by the erase too)."""
    walker = ctx.walker("erase-user: keys")
    selected: Counter[str] = Counter()
    corrupt = 0
    kinds = (Kind.SESSION, Kind.POINTER, Kind.WAIT_SCOPE, Kind.WAIT_SET)
    async for batch in walker.batches(frozenset(kinds)):
        for entry in batch:
            if entry.wrong_type:
                continue
            if _purge_step(ctx, entry, chosen) is not None:
                selected[entry.kind] += 1
            else:
                corrupt += _unreadable(ctx, entry)
    sessions = selected[Kind.SESSION]
    indexes = sum(selected.values()) - sessions
    result.update(walk_summary(walker), sessions=sessions, index_keys=indexes)
    result["skipped_corrupt"] = corrupt
    where = f"env {result['env']}, tenant {result['tenant']}, team {result['team']}"
    lines = [
        f"dry run: {sessions} session(s) and {indexes} pointer/wait key(s) of that user in "
        f"{where} would be erased; run again with --yes",
    ]
    if corrupt:
        lines.append(f"{corrupt} corrupt or unopened blob(s) not examined (see `check`)")
    return finish(Report(ExitCode.OK, result, lines), walker)
