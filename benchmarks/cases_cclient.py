"""Case 7: the C client, `redis-benchmark` (installed with redis-server), on the run's server.

GET of one 4 KiB value with one client (`-c 1`), with 64 clients (`-c 64`) and with 64 clients
pipelining 16 requests each (`-c 64 -P 16`): how far the batched store (case 6, `get`) is from
what a C client gets out of the same server on the same CPUs. `redis-benchmark` inherits this
process's CPU pinning, so it runs where the store's client runs, and the server where it always
does. Its client CPU per call is the child's rusage over its requests; the server's, `INFO cpu`
before and after. Without `-r`, every request reads the one key `key:__rand_int__`, which this
case SETs (a 4,096-byte value) before and DELs after.

Only against a private server: with `--redis-url` the case is skipped (it would write that key
outside the run's namespace).

Part of `python -m benchmarks`; also runs alone: `python -m benchmarks.cases_cclient [--quick]`
(a private, pinned redis-server).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import resource
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from greentic_session.testing import find_redis_server

from .cases_batching import sweep_row
from .settings import Profile
from .wire import server_cpu_seconds

__all__ = ["C_CASES", "find_redis_benchmark", "render_c_client_table", "run_c_client"]

KEY = "key:__rand_int__"  # the key redis-benchmark's GET reads when not given -r
VALUE = b"v" * 4096
# (label, clients, pipelined requests per client)
C_CASES: tuple[tuple[str, int, int], ...] = (
    ("redis-benchmark -c 1", 1, 1),
    ("redis-benchmark -c 64", 64, 1),
    ("redis-benchmark -c 64 -P 16", 64, 16),
)


def find_redis_benchmark() -> str | None:
    """`$REDIS_BENCHMARK`, else the one beside the redis-server in use, else PATH's."""
    explicit = os.environ.get("REDIS_BENCHMARK")
    if explicit:
        return explicit
    server = find_redis_server()
    if server is not None:
        beside = Path(server).with_name("redis-benchmark")
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("redis-benchmark")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _one(
    binary: str, address: tuple[str, int], n: int, clients: int, pipeline: int
) -> dict[str, Any]:
    """One redis-benchmark run of `n` GETs: its ops/s, latencies and CPU per call."""
    host, port = address
    args = [binary, "-h", host, "-p", str(port), "-t", "get", "-n", str(n), "-c", str(clients)]
    args += ["-P", str(pipeline), "--csv"]
    cpu0 = _children_cpu()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({proc.returncode}): {err.decode()[-500:]}")
    table = list(csv.DictReader(io.StringIO(out.decode())))
    row = next(r for r in table if r["test"] == "GET")
    return {
        "ops_per_s": float(row["rps"]),
        "latency_ms": {
            key: float(row[f"{key}_latency_ms"]) for key in ("avg", "p50", "p99", "max")
        },
        "client_cpu_ns": cpu * 1e9 / n,
    }


async def run_c_client(
    url: str, profile: Profile, *, private: bool, tick: Any = lambda: None
) -> list[dict[str, Any]]:
    """One row per case of `C_CASES`; none when the server is not private or there is no
    redis-benchmark."""
    binary = find_redis_benchmark()
    if not private or binary is None:
        for _ in C_CASES:
            tick()
        return []
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 6379
    admin = aioredis.Redis.from_url(url)
    rows: list[dict[str, Any]] = []
    try:
        await admin.set(KEY, VALUE)
        for label, clients, pipeline in C_CASES:
            n = profile.c_client_requests // (4 if clients == 1 else 1)
            srv0 = await server_cpu_seconds(admin)
            figures = await _one(binary, (host, port), n, clients, pipeline)
            srv = await server_cpu_seconds(admin) - srv0
            rows.append(
                {
                    "section": "c-client",
                    "op": "get",
                    "size": len(VALUE),
                    "label": label,
                    "role": "peer",
                    "concurrency": clients,
                    "pipeline": pipeline,
                    "requests": n,
                    **figures,
                    "server_cpu_ns": srv * 1e9 / n,
                }
            )
            tick()
    finally:
        await admin.delete(KEY)
        await admin.aclose()
    return rows


def render_c_client_table(rows: list[dict[str, Any]]) -> str:
    """redis-benchmark's figures, and the batched store's get (case 6) set against them."""
    c_rows = [r for r in rows if r["section"] == "c-client"]
    if not c_rows:
        return ""
    lines = [
        "",
        "The C client: redis-benchmark GET of a 4 KiB value on the same server and CPUs; "
        "ours/C = its ops/s over ours get's (case 6) at that concurrency",
        f"{'case':<28} {'ops/s':>9} {'avg us':>7} {'p99 us':>7} {'cpu us':>7} {'srv us':>7} "
        f"{'ours ops/s':>10} {'ours/C':>7} {'ours cpu us':>11}",
    ]
    for row in c_rows:
        ours = sweep_row(rows, "get", row["concurrency"], "ours")
        mine = "" if ours is None else f"{ours['ops_per_s']['median']:,.0f}"
        ratio = "" if ours is None else f"{row['ops_per_s'] / ours['ops_per_s']['median']:.2f}"
        cpu = "" if ours is None else f"{ours['client_cpu_ns'] / 1e3:.1f}"
        lat = row["latency_ms"]
        lines.append(
            f"{row['label']:<28} {row['ops_per_s']:>9,.0f} {lat['avg'] * 1e3:>7.0f} "
            f"{lat['p99'] * 1e3:>7.0f} {row['client_cpu_ns'] / 1e3:>7.2f} "
            f"{row['server_cpu_ns'] / 1e3:>7.2f} {mine:>10} {ratio:>7} {cpu:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .server import run_alone  # here: the runner (which imports this module) uses it too

    def run(target: Any, profile: Profile) -> Any:
        return run_c_client(target.url, profile, private=target.private)

    return run_alone(
        argv,
        prog="python -m benchmarks.cases_cclient",
        doc=__doc__,
        run=run,
        render=render_c_client_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
