"""Output: the stdout table, `latest.json` and `latency.png`.

Ratios in the table are cost ratios, ours / theirs, on the row of the contender compared
against (below 1.00 ours is cheaper): median latency at concurrency 1, and time per operation
(their ops/s over ours) at concurrency 64.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .cases_batching import render_batching_table
from .cases_cclient import render_c_client_table
from .payloads import HEADLINE_SIZE, size_label
from .targets import OURS_LABEL, Target, cost_ratio, find_row

__all__ = ["render_table", "write_json", "write_plot"]

ROLE_COLOURS = {"ours": "#1f77b4", "floor": "#7f7f7f", "peer": "#ff7f0e", "seed": "#d62728"}


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f}" if ns < 100_000 else f"{ns / 1000:.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _ops(value: float) -> str:
    return f"{value:,.0f}"


def _commands(cmds: dict[str, float]) -> str:
    return ", ".join(f"{name} {count:g}" for name, count in cmds.items())


def _grouped(rows: Iterable[dict[str, Any]], section: str) -> dict[tuple[int, str], list[Any]]:
    out: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        if row["section"] == section:
            out.setdefault((row["size"], row["op"]), []).append(row)
    return out


def _redis_table(rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    groups = _grouped(rows, "redis")
    for size in sorted({size for size, _ in groups}):
        blob = next(r["blob_bytes"] for (s, _), rs in groups.items() if s == size for r in rs)
        conc = next(r["concurrency"] for (s, _), rs in groups.items() if s == size for r in rs)
        lines += [
            "",
            f"Redis backend, payload {size_label(size)} (blob {blob:,} B): "
            f"latency at concurrency 1, throughput at concurrency {conc}",
            f"{'op':<13} {'contender':<24} {'median us':>9} {'p99 us':>8} {'ours/x':>7} "
            f"{'ops/s':>9} {'ours/x':>7} {'cpu us':>6} {'srv us':>6} {'RTs':>3} {'conn':>4}  "
            "server commands per op",
        ]
        for (s, op), group in groups.items():
            if s != size:
                continue
            ours = next(r for r in group if r["label"] == "ours")
            for i, row in enumerate(group):
                lat_ratio = tput_ratio = None
                if row is not ours:
                    lat_ratio = cost_ratio(ours, row, "latency")
                    tput_ratio = cost_ratio(ours, row, "throughput")
                lines.append(
                    f"{op if i == 0 else '':<13} {row['label']:<24} "
                    f"{_us(row['latency_ns']['median']):>9} {_us(row['latency_ns']['p99']):>8} "
                    f"{_ratio(lat_ratio):>7} {_ops(row['ops_per_s']['median']):>9} "
                    f"{_ratio(tput_ratio):>7} {_us(row['client_cpu_ns']):>6} "
                    f"{_us(row['server_cpu_ns']):>6} {row['round_trips']:>3} {row['connects']:>4}  "
                    f"{_commands(row['commands'])}"
                )
    return lines


def _latency_table(rows: list[dict[str, Any]], section: str, title: str) -> list[str]:
    lines: list[str] = []
    groups = _grouped(rows, section)
    ours_label = OURS_LABEL[section]
    for size in sorted({size for size, _ in groups}):
        blob = next(r["blob_bytes"] for (s, _), rs in groups.items() if s == size for r in rs)
        lines += [
            "",
            f"{title}, payload {size_label(size)} (blob {blob:,} B)",
            f"{'op':<14} {'contender':<26} {'median us':>9} {'p99 us':>8} {'ours/x':>7}",
        ]
        for (s, op), group in groups.items():
            if s != size:
                continue
            ours = next(r for r in group if r["label"] == ours_label)
            for i, row in enumerate(group):
                ratio = None if row is ours else cost_ratio(ours, row, "latency")
                lines.append(
                    f"{op if i == 0 else '':<14} {row['label']:<26} "
                    f"{_us_fine(row['latency_ns']['median']):>9} "
                    f"{_us_fine(row['latency_ns']['p99']):>8} {_ratio(ratio):>7}"
                )
    return lines


def _us_fine(ns: float) -> str:
    return f"{ns / 1000:.3f}" if ns < 10_000 else f"{ns / 1000:.1f}"


def _footprint_table(rows: list[dict[str, Any]]) -> list[str]:
    fp = [r for r in rows if r["section"] == "footprint"]
    if not fp:
        return []
    lines = [
        "",
        "Bytes per session (one session per user; Redis holds a blob key and a pointer key each)",
        f"{'backend':<8} {'payload':>8} {'sessions':>9} {'blob B':>7} {'bytes/session':>13} "
        f"{'overhead B':>10} {'/blob':>6}  method",
    ]
    for r in fp:
        lines.append(
            f"{r['backend']:<8} {size_label(r['size']):>8} {r['sessions']:>9,} "
            f"{r['blob_bytes']:>7,} {r['bytes_per_session']:>13,.0f} "
            f"{r['overhead_bytes']:>10,.0f} {r['bytes_per_session'] / r['blob_bytes']:>6.2f}  "
            f"{r['method']}"
        )
    return lines


def _targets_table(targets: list[Target]) -> list[str]:
    lines = ["", f"Targets at the headline payload ({size_label(HEADLINE_SIZE)}); ours/x <= limit"]
    for t in targets:
        verdict = "met" if t.met else "MISSED"
        lines.append(
            f"  {verdict:<6} {t.section:<8} {t.op:<13} vs {t.against:<24} "
            f"{t.metric:<19} {t.ratio:>6.3f} <= {t.limit:.2f}"
        )
    met = sum(t.met for t in targets)
    lines.append(f"  {met} of {len(targets)} met")
    return lines


CONTENDED = 0.05  # other processes' share of all CPU time above which figures are suspect


def _contention_warning(contention: dict[str, Any]) -> list[str]:
    share = contention.get("foreign_share")
    if share is None or share < CONTENDED:
        return []
    return [
        f"WARNING: other processes used {share:.0%} of the machine's CPU time during this run "
        f"({contention['foreign_cpu_seconds']} s); figures may be distorted, run again on a "
        "quiet machine"
    ]


def render_table(doc: dict[str, Any], targets: list[Target]) -> str:
    rows: list[dict[str, Any]] = doc["rows"]
    m = doc["machine"]
    head = [
        f"greentic_session benchmarks ({doc['profile']['name']} run, {doc['wall_seconds']:.0f} s): "
        f"Python {m['python']} on {m['cpu']} x{m['cpus']}; redis-server {doc['redis']['version']}"
        f" ({'private' if doc['redis']['private'] else 'given by --redis-url'})",
        *_contention_warning(m.get("contention", {})),
        "ours/x: cost ratio, ours over the row's contender (below 1.00 ours is cheaper); "
        "us = microseconds; cpu/srv: client/server CPU per call at concurrency 1",
    ]
    body = (
        _redis_table(rows)
        + _latency_table(rows, "memory", "In-memory backend, per-call latency")
        + _latency_table(rows, "codec", "Codec, one SessionData")
        + _footprint_table(rows)
        + [text for text in (render_batching_table(rows), render_c_client_table(rows)) if text]
        + _targets_table(targets)
    )
    return "\n".join(head + body)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")


Series = tuple[str, str, list[float | None]]


def _bars(
    ax: Any,
    groups: list[str],
    series: list[Series],
    tops: list[list[float | None]] | None = None,
) -> None:
    """Grouped bars: `series` is (legend label, colour, one value per group or None).

    `tops`, parallel to `series`, draws a short black tick per bar (the p99).
    """
    width = 0.8 / max(1, len(series))
    for k, (label, colour, values) in enumerate(series):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pts:
            ax.bar([p[0] for p in pts], [p[1] for p in pts], width, label=label, color=colour)
        if tops is not None:
            marks = [(x, v) for x, v in zip(xs, tops[k], strict=True) if v is not None]
            ax.scatter(
                [m[0] for m in marks], [m[1] for m in marks], marker="_", color="black", s=60
            )
    ax.set_xticks(range(len(groups)), groups)


def _role_values(
    rows: list[dict[str, Any]],
    section: str,
    ops: list[str],
    role: str,
    key: str,
    *,
    stat: str = "median",
) -> list[float | None]:
    out: list[float | None] = []
    for op in ops:
        row = next(
            (
                r
                for r in rows
                if r["section"] == section
                and r["op"] == op
                and r["size"] == HEADLINE_SIZE
                and r["role"] == role
            ),
            None,
        )
        out.append(None if row is None else float(row[key][stat]))
    return out


def write_plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows: list[dict[str, Any]] = doc["rows"]
    redis_ops = ["create", "get", "update", "find_by_user", "remove"]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    label = size_label(HEADLINE_SIZE)

    ax = axes[0][0]
    series: list[Series] = []
    tops: list[list[float | None]] = []
    for role, name in (
        ("ours", "ours"),
        ("floor", "floor (raw redis.asyncio)"),
        ("peer", "aiogram RedisStorage"),
        ("seed", "seed pattern"),
    ):
        vals = _role_values(rows, "redis", redis_ops, role, "latency_ns")
        p99 = _role_values(rows, "redis", redis_ops, role, "latency_ns", stat="p99")
        series.append((name, ROLE_COLOURS[role], [None if v is None else v / 1e3 for v in vals]))
        tops.append([None if v is None else v / 1e3 for v in p99])
    _bars(ax, redis_ops, series, tops)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([50, 100, 200, 500, 1000, 2000])
    ax.set_ylabel("median latency, us (log); tick = p99")
    ax.set_title(f"Redis, concurrency 1, {label} payload")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    series = []
    tops = []
    for role, name in (
        ("ours", "ours"),
        ("floor", "floor (raw redis.asyncio)"),
        ("peer", "aiogram RedisStorage"),
        ("seed", "seed pattern"),
    ):
        series.append(
            (name, ROLE_COLOURS[role], _role_values(rows, "redis", redis_ops, role, "ops_per_s"))
        )
    _bars(ax, redis_ops, series)
    ax.set_ylabel("ops/s (higher is better)")
    ax.set_title(f"Redis, concurrency 64, {label} payload")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    mem_labels = [
        ("ours", "ours", ROLE_COLOURS["ours"]),
        ("floor: dict", "dict", "#c7c7c7"),
        ("floor: dict+decode", "dict + decode", "#7f7f7f"),
        ("floor: dict+encode", "dict + encode", "#3f3f3f"),
    ]
    series = []
    for row_label, name, colour in mem_labels:
        vals: list[float | None] = []
        for op in redis_ops:
            row = find_row(rows, "memory", op, HEADLINE_SIZE, row_label)
            vals.append(None if row is None else row["latency_ns"]["median"] / 1e3)
        series.append((name, colour, vals))
    _bars(ax, redis_ops, series)
    ax.set_ylabel("median latency, us")
    ax.set_title(f"In-memory backend, {label} payload")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    codec_ops = ["encode", "decode", "encode+decode"]
    series = []
    for row_label, colour in (
        ("ours (msgspec)", ROLE_COLOURS["ours"]),
        ("stdlib json + dataclasses", "#2ca02c"),
        ("pydantic v2", "#9467bd"),
    ):
        vals = []
        for op in codec_ops:
            row = find_row(rows, "codec", op, HEADLINE_SIZE, row_label)
            vals.append(None if row is None else row["latency_ns"]["median"] / 1e3)
        series.append((row_label, colour, vals))
    _bars(ax, codec_ops, series)
    ax.set_ylabel("median latency, us")
    ax.set_title(f"Codec, one SessionData, {label} payload")
    ax.legend(fontsize=8)

    m = doc["machine"]
    fig.suptitle(
        f"greentic_session ({doc['profile']['name']} run): Python {m['python']}, "
        f"{m['cpus']} CPUs, redis-server {doc['redis']['version']}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
