"""The performance targets, checked against one run's rows. A report, never a test: nothing fails.

Every ratio is a cost ratio, ours / theirs: below 1 ours is cheaper. For latency it is the ratio
of medians at concurrency 1; for throughput it is their ops/s over ours at concurrency 64 (the
ratio of time per operation). Targets are judged at the headline payload (4 KiB).

The batching targets (the `batching` section) are speed-ups, written here as the same cost ratios:
"at least 2.5x the raw pool's ops/s" is a limit of 1 / 2.5 = 0.40 on floor ops/s over ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .payloads import HEADLINE_SIZE

__all__ = ["OURS_LABEL", "Target", "check_targets", "cost_ratio", "find_row"]

SEED_CLEARLY = 1 / 1.5  # "clearly faster" than the seed: at least 1.5x faster

# (operation, the floor it is held to, the limit)
REDIS_FLOORS: tuple[tuple[str, str, float], ...] = (
    ("get", "floor: GET", 1.15),
    ("find_by_user", "floor: GET", 1.15),
    ("create", "floor: MULTI SET+SET", 1.15),
    ("update", "floor: SET", 1.30),
)
# The lifecycle and wait calls, each held to the floor or the call it builds on.
REDIS_LIFECYCLE: tuple[tuple[str, str, float], ...] = (
    ("update_cas", "floor: SET", 1.35),
    ("update_with", "ours: get_session+update_session", 1.0),
    ("find_or_create", "ours: find_by_user", 1.15),
    ("create_idle", "ours without expiry: create", 1.05),
    ("update_idle", "ours without expiry: update", 1.05),
    ("find_wait_by_scope", "floor: GET", 1.25),
)
# aiogram's nearest operation to each of ours
REDIS_AIOGRAM: dict[str, str] = {
    "create": "aiogram set_data",
    "get": "aiogram get_data",
    "update": "aiogram set_data",
    "find_by_user": "aiogram get_data",
    "remove": "aiogram set_data({})",
}
# Batching: (operation, the floor it is held to, concurrency, the limit). At concurrency 64 the
# batched store against the raw redis-py pool's floor; at concurrency 1 every operation against
# a raw GET (get no slower, the others within 1.1x).
BATCHING: tuple[tuple[str, str, int, float], ...] = (
    ("get", "floor: GET", 64, 1 / 2.5),
    ("update", "floor: SET", 64, 1 / 2.5),
    ("find_by_user", "floor: GET", 64, 1 / 2),
    ("create", "floor: MULTI SET+SET", 64, 1 / 4),
    ("get", "floor: GET", 1, 1.0),
    ("update", "floor: GET", 1, 1.1),
    ("find_by_user", "floor: GET", 1, 1.1),
    ("create", "floor: GET", 1, 1.1),
)
OURS_LABEL: dict[str, str] = {
    "redis": "ours",
    "memory": "ours",
    "codec": "ours (msgspec)",
    "batching": "ours",
}
MEMORY_FLOOR = ("floor: dict+decode", 1.5)
CODEC_PEER = ("pydantic v2", 1 / 5)


@dataclass(frozen=True)
class Target:
    section: str
    op: str
    size: int
    against: str
    metric: str  # "latency c=1 median" or "throughput c=64"
    ratio: float
    limit: float

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def find_row(
    rows: Iterable[dict[str, Any]], section: str, op: str, size: int, label: str
) -> dict[str, Any] | None:
    for row in rows:
        if (row["section"], row.get("op"), row["size"], row.get("label")) == (
            section,
            op,
            size,
            label,
        ):
            return row
    return None


def cost_ratio(ours: dict[str, Any], other: dict[str, Any], metric: str) -> float:
    if metric == "throughput":
        return float(other["ops_per_s"]["median"]) / float(ours["ops_per_s"]["median"])
    return float(ours["latency_ns"]["median"]) / float(other["latency_ns"]["median"])


def _pair(
    rows: list[dict[str, Any]], section: str, op: str, against: str, limit: float
) -> list[Target]:
    ours = find_row(rows, section, op, HEADLINE_SIZE, OURS_LABEL[section])
    other = find_row(rows, section, op, HEADLINE_SIZE, against)
    if ours is None or other is None:
        return []
    metrics = ["latency"] + (["throughput"] if section == "redis" else [])
    return [
        Target(
            section,
            op,
            HEADLINE_SIZE,
            against,
            "latency c=1 median" if m == "latency" else "throughput c=64",
            cost_ratio(ours, other, m),
            limit,
        )
        for m in metrics
    ]


def _batching(rows: list[dict[str, Any]]) -> list[Target]:
    """The batching targets, on the concurrency sweep's rows (ops/s at each concurrency)."""
    out: list[Target] = []
    for op, against, concurrency, limit in BATCHING:
        pair = [
            next(
                (
                    r
                    for r in rows
                    if r["section"] == "batching"
                    and (r["op"], r["size"], r["concurrency"], r["label"])
                    == (op, HEADLINE_SIZE, concurrency, label)
                ),
                None,
            )
            for label in (OURS_LABEL["batching"], against)
        ]
        ours, other = pair
        if ours is None or other is None:
            continue
        ratio = cost_ratio(ours, other, "throughput")
        metric = f"throughput c={concurrency}"
        out.append(Target("batching", op, HEADLINE_SIZE, against, metric, ratio, limit))
    return out


def check_targets(rows: list[dict[str, Any]]) -> list[Target]:
    out: list[Target] = []
    for op, floor, limit in REDIS_FLOORS + REDIS_LIFECYCLE:
        out += _pair(rows, "redis", op, floor, limit)
    for op, peer in REDIS_AIOGRAM.items():
        out += _pair(rows, "redis", op, peer, 1.0)
    for op in REDIS_AIOGRAM:
        out += _pair(rows, "redis", op, "seed pattern", SEED_CLEARLY)
    for op in ("create", "get", "update", "find_by_user", "remove"):
        out += _pair(rows, "memory", op, *MEMORY_FLOOR)
    out += _pair(rows, "codec", "encode+decode", *CODEC_PEER)
    out += _batching(rows)
    return out
