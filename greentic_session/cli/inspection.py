"""The read-only commands: `get` (one session by its key), `find` (the session a user's pointer
names) and `stats` (counts per owner, blob sizes, expiries, sealed forms and problems, from a
`Census`). A sealed blob is opened with the run's keys (`Context.open`)."""

from __future__ import annotations

import json
from typing import Any

from redis import exceptions as redis_errors

from ..fence import NO_TEAM, UserSlot, check_key
from ..schema import validate_identifier
from .census import SIZE_BUCKETS, TTL_BUCKETS, Census, sealed_form, take_census
from .context import Context, ExitCode, Report, finish, table, team_label, walk_summary
from .layout import Kind
from .walk import as_text

__all__ = ["find", "get", "stats"]


def _ms(pttl: int | None) -> str:
    return "none" if pttl is None else f"{pttl / 1000:.1f}s"


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
    form = sealed_form(key, blob)
    result["sealed"] = _form_json(form)
    opened = ctx.open(key, blob)
    data = opened.data
    if data is None or opened.plain is None:
        what = "does_not_open" if opened.sealed else "corrupt"
        result[what] = opened.problem
        label = "does not open" if opened.sealed else "corrupt"
        lines = table(
            ["field", "value"],
            [
                ("key", key),
                ("size", len(blob)),
                ("stored as", _form_label(form)),
                (label, opened.problem),
            ],
        )
        message = (
            "the stored blob does not open with the keys given (see docs/cli.md: keys)"
            if opened.sealed
            else "the stored blob is corrupt"
        )
        return Report(ExitCode.PROBLEMS, result, lines, message=message)
    ctx_ = data.tenant_ctx
    user = ctx_.normalized_user
    if user is not None:
        slot = UserSlot(ctx_.env, ctx_.tenant_id, ctx_.normalized_team, user)
        pointer = await ctx.conn.call(client.get, layout.full(layout.pointer_name(slot)))
        result["pointer"] = {
            "key": layout.pointer_name(slot),
            "points_here": pointer is not None and as_text(pointer) == key,
        }
    result["data"] = json.loads(opened.plain)
    rows: list[tuple[str, object]] = [
        ("key", key),
        ("expires in", _ms(result["pttl"])),
        ("size", f"{len(blob)} B"),
        ("stored as", _form_label(form)),
        ("env", ctx_.env),
        ("tenant", ctx_.tenant_id),
        ("team", team_label(ctx_.normalized_team)),
        ("user", team_label(user)),
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


def _form_json(form: tuple[str, bool, bool] | None) -> dict[str, Any] | None:
    """A sealed form (census.sealed_form) as JSON; None for a malformed header."""
    if form is None:
        return None
    kid, compressed, encrypted = form
    return {"key_id": kid or None, "compressed": compressed, "encrypted": encrypted}


def _form_label(form: tuple[str, bool, bool] | None) -> str:
    if form is None:
        return "malformed sealed blob"
    kid, compressed, encrypted = form
    parts = ([f"encrypted (key {kid})"] if encrypted else []) + (["zstd"] if compressed else [])
    return ", ".join(parts) or "plaintext JSON"


def _sealing_rows(census: Census) -> tuple[list[dict[str, Any]], list[tuple[object, ...]]]:
    """The sealed forms the walk met, as JSON and as table rows, most frequent first."""
    entries: list[dict[str, Any]] = []
    rows: list[tuple[object, ...]] = []
    for form, blobs in census.forms.most_common():
        size = census.form_bytes[form]
        entries.append({"form": _form_json(form), "blobs": blobs, "bytes": size})
        rows.append((_form_label(form), blobs, size))
    return entries, rows


async def get(ctx: Context, key: str) -> Report:
    check_key(key)
    return await _show(ctx, key)


async def find(ctx: Context, env: str, tenant: str, team: str | None, user: str) -> Report:
    slot = UserSlot(
        validate_identifier(env, "env"),
        validate_identifier(tenant, "tenant"),
        None if team is None or team == NO_TEAM else validate_identifier(team, "team"),
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


async def stats(ctx: Context) -> Report:
    census, walker = await take_census(ctx, "stats: keys")
    owners = sorted(set(census.sessions) | set(census.refs))
    sealing, sealing_rows = _sealing_rows(census)
    result: dict[str, Any] = {
        **walk_summary(walker),
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
        "sealing": sealing,
        "sealed": sum(n for form, n in census.forms.items() if form and (form[1] or form[2])),
        "plaintext": census.forms[("", False, False)],
        "orphans": len(census.orphans),
        "corrupt": len(census.corrupt),
        "does_not_open": len(census.unopened),
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
        (["stored as", "sessions", "bytes"], sealing_rows),
        (
            ["problem", "keys"],
            [
                ("orphan references", result["orphans"]),
                ("corrupt blobs", result["corrupt"]),
                ("unopened blobs", result["does_not_open"]),
                ("wrong-type keys", result["wrong_type"]),
            ],
        ),
    ]
    lines: list[str] = []
    for headers, rows in sections:
        if rows:  # an empty namespace has no owners, sizes or expiries to show
            lines += [*([""] if lines else []), *table(headers, rows)]
    return finish(Report(ExitCode.OK, result, lines), walker)
