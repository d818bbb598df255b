"""A/B: this tree's stores against the same stores at an earlier commit, interleaved in one run.

`python -m benchmarks.ab --base REV` exports REV's `greentic_session/` (git archive) as the
package `greentic_session_base`, opens both versions' in-memory and Redis stores (a private
redis-server, one namespace each) and runs each existing operation for both in interleaved
rounds: latency at concurrency 1 and ops/s at concurrency 64. It prints new/base cost ratios
(below 1: the tree is cheaper). A report, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import greentic_session
from greentic_session.testing import RedisServer

from .harness import Contender, Summary, latency, rates

OPS = ("create", "get", "update", "find_by_user", "remove")
USERS = 64
PAYLOAD = 4096


def export_base(rev: str, into: Path) -> ModuleType:
    """REV's package, importable as `greentic_session_base` (its imports are relative)."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "greentic_session"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    shutil.move(into / "greentic_session", into / "greentic_session_base")
    sys.path.insert(0, str(into))
    return importlib.import_module("greentic_session_base")


class Side:
    """One version's store and its population of sessions."""

    def __init__(self, pkg: ModuleType, store: Any) -> None:
        self.pkg, self.store = pkg, store
        ctx_type, cursor = pkg.TenantCtx, pkg.SessionCursor(node_pointer="node.wait")
        self.users = [f"user-{i}" for i in range(USERS)]
        self.ctxs = [ctx_type.new("dev", "tenant-42", team="support", user=u) for u in self.users]
        pad = "x" * PAYLOAD
        self.datas = [
            pkg.SessionData(
                tenant_ctx=c, flow_id="f.flow", cursor=cursor, context_json=f'{{"p":"{pad}"}}'
            )
            for c in self.ctxs
        ]
        self.keys: list[str] = []
        self.doomed: list[str] = []

    async def populate(self) -> None:
        for ctx, data in zip(self.ctxs, self.datas, strict=True):
            self.keys.append(await self.store.create_session(ctx, data))

    def contenders(self, op: str, label: str) -> Contender:
        store, n = self.store, USERS

        async def create(i: int) -> None:
            self.doomed.append(await store.create_session(self.ctxs[i % n], self.datas[i % n]))

        async def get(i: int) -> None:
            await store.get_session(self.keys[i % n])

        async def update(i: int) -> None:
            await store.update_session(self.keys[i % n], self.datas[i % n])

        async def find(i: int) -> None:
            await store.find_by_user(self.ctxs[i % n], self.users[i % n])

        async def remove(i: int) -> None:
            await store.remove_session(self.doomed[i])

        async def make_doomed(count: int) -> None:
            self.doomed[:] = [
                await store.create_session(self.ctxs[i % n], self.datas[i % n])
                for i in range(count)
            ]

        ops: dict[str, Contender] = {
            # Created sessions are kept: they re-point users at identical data, so the later
            # operations see the same work; remove runs last and removes sessions made for it.
            "create": Contender(label, "ours", create),
            "get": Contender(label, "ours", get),
            "update": Contender(label, "ours", update),
            "find_by_user": Contender(label, "ours", find),
            "remove": Contender(label, "ours", remove, make_doomed),
        }
        return ops[op]


async def compare(
    base_pkg: ModuleType, open_store: Callable[[ModuleType], Any], rounds: int, ops_n: int
) -> list[tuple[str, float, float]]:
    new = Side(greentic_session, open_store(greentic_session))
    base = Side(base_pkg, open_store(base_pkg))
    await new.populate()
    await base.populate()
    out = []
    try:
        for op in OPS:
            pair = [new.contenders(op, "new"), base.contenders(op, "base")]
            lat = await latency(pair, rounds=rounds, ops=ops_n, seconds=2.0, warmup=50)
            tput = await rates(
                pair, rounds=rounds, ops=ops_n * 4, seconds=2.0, concurrency=64, warmup=50
            )
            c1 = Summary.of(lat.samples["new"]).median / Summary.of(lat.samples["base"]).median
            c64 = (
                Summary.of(tput.ops_per_s["base"]).median / Summary.of(tput.ops_per_s["new"]).median
            )
            out.append((op, c1, c64))
    finally:
        await new.store.aclose()
        await base.store.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--base", required=True, metavar="REV", help="the commit to compare to")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--ops", type=int, default=400, help="calls per contender per round")
    args = parser.parse_args(argv)
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        base_pkg = export_base(args.base, Path(tmp))
        print(f"new = this tree, base = {args.base}; ratios new/base (cost; <1 = new cheaper)")
        memory = asyncio.run(
            compare(base_pkg, lambda pkg: pkg.InMemorySessionStore(), args.rounds, args.ops)
        )
        with RedisServer() as server:
            redis = asyncio.run(
                compare(
                    base_pkg,
                    lambda pkg: pkg.RedisSessionStore.from_url(
                        server.url, namespace=f"ab-{uuid.uuid4().hex}"
                    ),
                    args.rounds,
                    args.ops,
                )
            )
    print(f"{'backend':8} {'op':14} {'c=1 latency':>12} {'c=64 ops/s':>12}")
    for backend, rows in (("memory", memory), ("redis", redis)):
        for op, c1, c64 in rows:
            print(f"{backend:8} {op:14} {c1:12.3f} {c64:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
