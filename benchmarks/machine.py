"""What the run ran on, and whether anything else competed for the CPUs meanwhile."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["CpuAccount", "git_state", "machine_info", "package_versions"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def git_state(repo: Path) -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "event_loop": "asyncio (default policy)",
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": _mem_total(),
    }


def _busy_seconds() -> float | None:
    """CPU seconds all CPUs spent busy since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10]) if len(ticks) > 9 else 0  # already counted in user/nice
    return (sum(ticks) - idle - guest) / _TICKS


def _self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pid_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


class CpuAccount:
    """CPU time other processes used during the run: the benchmark's and the private server's
    own CPU subtracted from all busy CPU time. Figures from a busy machine are suspect."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._busy = _busy_seconds()
        self._self = _self_seconds()

    def foreign(self, server_pid: int | None) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        busy = _busy_seconds()
        if busy is None or self._busy is None:
            return {"foreign_cpu_seconds": None, "note": "no /proc/stat"}
        ours = _self_seconds() - self._self
        server = _pid_seconds(server_pid) if server_pid is not None else None
        foreign = busy - self._busy - ours - (server or 0.0)
        share = foreign / (wall * (os.cpu_count() or 1))
        return {
            "foreign_cpu_seconds": round(foreign, 1),
            "foreign_share": round(share, 3),
            "benchmark_cpu_seconds": round(ours, 1),
            "server_cpu_seconds": None if server is None else round(server, 1),
            "note": "server CPU unknown (--redis-url): it counts as foreign"
            if server is None
            else "",
        }
