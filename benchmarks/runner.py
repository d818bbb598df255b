"""`python -m benchmarks`: run every case in one process, print the table, write JSON and a plot."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tqdm import tqdm

from greentic_session.backends.redis.options import redact_url

from .cases_batching import batching_ticks, run_batching_cases
from .cases_cclient import C_CASES, run_c_client
from .cases_cluster import cluster_ticks, render_cluster_table, run_cluster_cases
from .cases_codec import CODEC_OPS, run_codec_size
from .cases_memory import MEMORY_OPS, run_memory_op
from .cases_otel import otel_ticks, render_otel_table, run_otel_cases
from .cases_redis import REDIS_OPS, run_redis_op
from .cases_sealing import render_sealing_table, run_sealing_cases, sealing_ticks
from .cases_sealing_store import (
    render_sealing_store_table,
    run_sealing_store_cases,
    sealing_store_ticks,
)
from .machine import CpuAccount, git_state, machine_info, package_versions
from .memory_usage import memory_footprint, redis_footprint
from .report import render_table, write_json, write_plot
from .server import RedisTarget, redis_target
from .settings import FULL, QUICK, Profile
from .targets import check_targets

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
PACKAGES = (
    "greentic-session",
    "msgspec",
    "redis",
    "hiredis",
    "aiogram",
    "pydantic",
    "pydantic-core",
    "matplotlib",
    "tqdm",
    "cryptography",
    "backports.zstd",
)
SECTIONS = (
    "codec",
    "sealing",
    "sealing-store",
    "memory",
    "redis",
    "footprint",
    "otel",
    "batching",
    "c-client",
    "cluster",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="greentic_session against its floors and peers, in one run on one machine.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the short profile (under 60 s on 2 cores)"
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="benchmark this Redis instead of starting a private redis-server (keys are written "
        "under bench:<run id>: and deleted afterwards; never FLUSHALL)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="where latest.json and latency.png go (default: benchmarks/results)",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="skip latency.png (matplotlib not needed)"
    )
    parser.add_argument(
        "--sections",
        metavar="NAME,...",
        type=_sections,
        default=SECTIONS,
        help=f"run only these sections, in this order (default: all: {','.join(SECTIONS)}); "
        "a partial run writes latest-<sections>.json and no plot",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the benchmark and the private redis-server to separate CPUs",
    )
    return parser.parse_args(argv)


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none)'}; have: {', '.join(SECTIONS)}"
        )
    return names


async def _redis_version(url: str) -> str:
    client = aioredis.Redis.from_url(url)
    try:
        info: dict[str, Any] = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()


def plan_ticks(profile: Profile, sections: tuple[str, ...] = SECTIONS) -> int:
    ticks = {
        "codec": len(profile.codec_sizes) * len(CODEC_OPS) * profile.rounds,
        "sealing": sealing_ticks(profile),
        "sealing-store": sealing_store_ticks(profile),
        "memory": len(profile.memory_sizes) * len(MEMORY_OPS) * profile.rounds,
        "redis": len(profile.redis_sizes) * len(REDIS_OPS) * (2 * profile.rounds + 1),
        "footprint": len(profile.footprint_sizes) * 2,
        "otel": otel_ticks(profile),
        "batching": batching_ticks(profile),
        "c-client": len(C_CASES),
        "cluster": cluster_ticks(),
    }
    return sum(ticks[section] for section in sections)


async def run_cases(
    target: RedisTarget,
    profile: Profile,
    *,
    run_id: str,
    tick: Callable[[], None],
    status: Callable[[str], None],
    seconds: dict[str, float],
    sections: tuple[str, ...] = SECTIONS,
) -> list[dict[str, Any]]:
    """The cases of `sections`, in that order; `seconds` gets each section's wall time."""
    rows: list[dict[str, Any]] = []
    url = target.url
    for section in sections:
        started = time.perf_counter()
        if section == "codec":
            for size in profile.codec_sizes:
                status(f"codec {size} B")
                rows += run_codec_size(size, profile, tick=tick)
        elif section == "sealing":
            status("sealing 4 KiB")
            rows += run_sealing_cases(profile, tick=tick)
        elif section == "sealing-store":
            status("sealed stores 4 KiB")
            rows += await run_sealing_store_cases(url, profile, tick=tick)
        elif section == "memory":
            for size in profile.memory_sizes:
                for op in MEMORY_OPS:
                    status(f"memory {op} {size} B")
                    rows += await run_memory_op(op, size, profile, tick=tick)
        elif section == "redis":
            for size in profile.redis_sizes:
                for op in REDIS_OPS:
                    status(f"redis {op} {size} B")
                    rows += await run_redis_op(url, op, size, profile, run_id=run_id, tick=tick)
        elif section == "footprint":
            for size in profile.footprint_sizes:
                status(f"footprint {size} B")
                rows.append(await memory_footprint(size, profile.footprint_sessions))
                tick()
                sessions = profile.footprint_sessions
                rows.append(await redis_footprint(url, size, sessions, run_id=run_id, tick=tick))
        elif section == "otel":
            status("otel overhead")
            rows += await run_otel_cases(url, profile, tick=tick)
        elif section == "batching":
            status("batching sweep")
            rows += await run_batching_cases(url, profile, run_id=run_id, tick=tick)
        elif section == "c-client":
            status("redis-benchmark")
            rows += await run_c_client(url, profile, private=target.private, tick=tick)
        elif section == "cluster":
            status("redis cluster")
            rounds, ops = profile.sweep_rounds, profile.sweep_ops
            rows += await run_cluster_cases(rounds, ops, tick=tick)
        seconds[section] = round(time.perf_counter() - started, 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    run_id = uuid.uuid4().hex[:8]
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    section_seconds: dict[str, float] = {}
    sections: tuple[str, ...] = args.sections
    partial = set(sections) != set(SECTIONS)
    bar = tqdm(
        total=plan_ticks(profile, sections),
        desc=f"bench ({profile.name})",
        unit="step",
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    # Everything alive now (imports: matplotlib, pydantic, aiogram) is never garbage; frozen, it
    # is skipped by the collection the harness runs before each timed loop (13 s to 2 s for the
    # codec section of a quick run).
    gc.collect()
    gc.freeze()
    cpu = CpuAccount()
    with bar, redis_target(args.redis_url, pin=not args.no_pin) as target:
        url = target.url
        rows = asyncio.run(
            run_cases(
                target,
                profile,
                run_id=run_id,
                tick=bar.update,
                status=bar.set_postfix_str,
                seconds=section_seconds,
                sections=sections,
            )
        )
        redis_version = asyncio.run(_redis_version(url))
        contention = cpu.foreign(target.pid)
    wall = time.perf_counter() - t0
    targets = check_targets(rows)
    doc: dict[str, Any] = {
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "section_seconds": section_seconds,
        "profile": profile.as_dict(),
        "sections": list(sections),
        "machine": {**machine_info(), "pinning": target.pinning, "contention": contention},
        "versions": package_versions(PACKAGES),
        "git": git_state(REPO),
        "redis": {
            "url": redact_url(url),
            "private": target.private,
            "version": redis_version,
        },
        "method": {
            "timer": "time.perf_counter_ns",
            "interleaving": "contenders rotate order every round (ABC, BCA, CAB, ...)",
            "gc": "cyclic GC disabled inside timed loops, collected before each",
            "latency": "per call for Redis; per-call mean of batches for in-memory and codec",
            "ratios": "cost ratios ours/theirs: latency medians; their ops/s over ours",
            "cpu": "client: time.process_time per call; server: INFO cpu user+sys delta per call",
        },
        "rows": rows,
        "targets": [t.as_dict() for t in targets],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"latest-{'+'.join(sections)}.json" if partial else "latest.json"
    write_json(doc, args.out / name)
    plot = not (args.no_plot or partial)
    if plot:
        write_plot(doc, args.out / "latency.png")
    print(render_table(doc, targets))
    print(render_sealing_table(rows))
    print(render_sealing_store_table(rows))
    print(render_otel_table(rows))
    print(render_cluster_table(rows))
    print(f"\nwrote {args.out / name}" + (" and latency.png" if plot else ""))
    sections = ", ".join(f"{name} {secs:.1f} s" for name, secs in section_seconds.items())
    print(f"wall time {wall:.1f} s ({sections})")
    return 0
