"""How much to measure: the quick profile (< 60 s on 2 cores) and the full one (< 15 min)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .payloads import HEADLINE_SIZE, SIZES

__all__ = ["FULL", "QUICK", "Profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int  # interleaved rounds per measurement (every contender runs once a round)
    concurrency: int
    # Redis: per round and contender, at most this many calls or seconds, whichever ends first.
    redis_sizes: tuple[int, ...]
    redis_warmup: int
    redis_latency_ops: int
    redis_latency_seconds: float
    redis_throughput_ops: int
    redis_throughput_seconds: float
    # In-memory backend and codec: `batches` timed batches of `batch` calls per round.
    memory_sizes: tuple[int, ...]
    memory_batches: int
    memory_batch: int
    memory_seconds: float
    codec_sizes: tuple[int, ...]
    codec_batches: int
    codec_batch: int
    codec_seconds: float
    # Bytes per session: how many sessions, at which payload sizes.
    footprint_sessions: int
    footprint_sizes: tuple[int, ...]
    # Batching: concurrencies swept; per round and contender, calls or seconds.
    sweep_concurrency: tuple[int, ...]
    sweep_rounds: int
    sweep_ops: int
    sweep_seconds: float
    # redis-benchmark (the C client): requests per case (a quarter of them at -c 1).
    c_client_requests: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Profile(
    name="quick",
    rounds=3,
    concurrency=64,
    redis_sizes=(HEADLINE_SIZE,),
    redis_warmup=100,
    redis_latency_ops=300,
    redis_latency_seconds=0.1,
    redis_throughput_ops=1500,
    redis_throughput_seconds=0.2,
    memory_sizes=(HEADLINE_SIZE,),
    memory_batches=100,
    memory_batch=50,
    memory_seconds=0.05,
    codec_sizes=SIZES,
    codec_batches=60,
    codec_batch=50,
    codec_seconds=0.05,
    footprint_sessions=10_000,
    footprint_sizes=(HEADLINE_SIZE,),
    sweep_concurrency=(1, 64),
    sweep_rounds=3,
    sweep_ops=3000,
    sweep_seconds=0.1,
    c_client_requests=40_000,
)

FULL = Profile(
    name="full",
    rounds=6,
    concurrency=64,
    redis_sizes=SIZES,
    redis_warmup=200,
    redis_latency_ops=1500,
    redis_latency_seconds=0.3,
    redis_throughput_ops=6000,
    redis_throughput_seconds=0.4,
    memory_sizes=SIZES,
    memory_batches=400,
    memory_batch=50,
    memory_seconds=0.15,
    codec_sizes=SIZES,
    codec_batches=300,
    codec_batch=50,
    codec_seconds=0.15,
    footprint_sessions=100_000,
    footprint_sizes=(256, HEADLINE_SIZE),
    sweep_concurrency=(1, 16, 64, 256),
    sweep_rounds=6,
    sweep_ops=8000,
    sweep_seconds=0.3,
    c_client_requests=200_000,
)
