"""Case 3: the in-memory backend, operation by operation, against dict floors.

Contenders, all coroutines awaited from the same loop:

- ours:                `InMemorySessionStore` (opened from the shared backend table);
- floor: dict          the bare dict access the operation needs (get, set or pop), in a coroutine;
- floor: dict+decode   that access plus one msgspec decode of the same blob: what a store that
                       keeps encoded bytes pays per read to keep callers from mutating stored
                       state, and the bar every operation is held to (the store keeps private
                       structural copies instead, which cost less than a decode, so it may
                       come in under this floor);
- floor: dict+encode   for create and update only: the access plus one msgspec encode, what a
                       store that keeps encoded bytes (as Redis does) pays per write.

Calls are timed in batches (see `harness.batched_async_latency`): a single call is a few
microseconds, close to the timer's own cost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from greentic_session import InMemorySessionStore, SessionData, SessionKey
from greentic_session.testing import BACKENDS

from .harness import Contender, batched_async_latency, latency_rows
from .payloads import Population
from .settings import Profile

__all__ = ["MEMORY_OPS", "memory_contenders", "open_memory_store", "run_memory_op"]

MEMORY_OPS: tuple[str, ...] = ("create", "get", "update", "find_by_user", "remove")
USERS = 64

_decoder = msgspec.json.Decoder(SessionData)
_encoder = msgspec.json.Encoder(order="deterministic")


def open_memory_store() -> InMemorySessionStore:
    backend = next(b for b in BACKENDS if b.id == "memory")
    store = backend.open(namespace="bench")
    if not isinstance(store, InMemorySessionStore):
        raise TypeError(f"backend table gave {type(store).__name__}, not InMemorySessionStore")
    return store


@dataclass
class _Slot:
    """A store (or dict) a contender may swap for a fresh one between batches."""

    store: InMemorySessionStore = field(default_factory=open_memory_store)
    made: list[str] = field(default_factory=list)
    table: dict[str, bytes] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


async def _populated(pop: Population) -> tuple[InMemorySessionStore, list[SessionKey]]:
    store = open_memory_store()
    ids = [await store.create_session(c, d) for c, d in zip(pop.ctxs, pop.datas, strict=True)]
    return store, ids


async def memory_contenders(op: str, pop: Population) -> list[Contender]:
    n_users = pop.count
    blobs, datas, ctxs, users = pop.blobs, pop.datas, pop.ctxs, pop.users
    store, ids = await _populated(pop)
    table = {str(k): b for k, b in zip(ids, blobs, strict=True)}
    decode, encode = _decoder.decode, _encoder.encode

    if op in ("get", "find_by_user"):
        if op == "get":

            async def ours(i: int) -> Any:
                return await store.get_session(ids[i % n_users])

        else:

            async def ours(i: int) -> Any:
                j = i % n_users
                return await store.find_by_user(ctxs[j], users[j])

        async def bare(i: int) -> Any:
            return table.get(ids[i % n_users])

        async def plus_decode(i: int) -> Any:
            return decode(table.get(ids[i % n_users]))  # type: ignore[arg-type]

        return [
            Contender("ours", "ours", ours),
            Contender("floor: dict", "floor", bare),
            Contender("floor: dict+decode", "floor", plus_decode),
        ]

    if op == "update":

        async def ours_update(i: int) -> None:
            j = i % n_users
            await store.update_session(ids[j], datas[j])

        async def bare_set(i: int) -> None:
            j = i % n_users
            table[ids[j]] = blobs[j]

        async def set_decode(i: int) -> Any:
            j = i % n_users
            table[ids[j]] = blobs[j]
            return decode(blobs[j])

        async def set_encode(i: int) -> None:
            j = i % n_users
            table[ids[j]] = encode(datas[j])

        return [
            Contender("ours", "ours", ours_update),
            Contender("floor: dict", "floor", bare_set),
            Contender("floor: dict+decode", "floor", set_decode),
            Contender("floor: dict+encode", "floor", set_encode),
        ]

    if op == "create":
        ours_slot, fresh = _Slot(), _Slot()

        async def ours_create(i: int) -> None:
            j = i % n_users
            await ours_slot.store.create_session(ctxs[j], datas[j])

        async def ours_finish() -> None:
            ours_slot.store = open_memory_store()

        async def fresh_prepare(n: int) -> None:
            fresh.table = {}
            fresh.keys = [str(uuid.uuid4()) for _ in range(n)]

        async def new_set(i: int) -> None:
            fresh.table[fresh.keys[i]] = blobs[i % n_users]

        async def new_set_decode(i: int) -> Any:
            blob = blobs[i % n_users]
            fresh.table[fresh.keys[i]] = blob
            return decode(blob)

        async def new_set_encode(i: int) -> None:
            fresh.table[fresh.keys[i]] = encode(datas[i % n_users])

        return [
            Contender("ours", "ours", ours_create, finish=ours_finish),
            Contender("floor: dict", "floor", new_set, fresh_prepare),
            Contender("floor: dict+decode", "floor", new_set_decode, fresh_prepare),
            Contender("floor: dict+encode", "floor", new_set_encode, fresh_prepare),
        ]

    if op == "remove":
        ours_slot, fresh = _Slot(), _Slot()

        async def ours_prepare(n: int) -> None:
            ours_slot.store = open_memory_store()
            s = ours_slot.store
            ours_slot.made = [
                await s.create_session(ctxs[i % n_users], datas[i % n_users]) for i in range(n)
            ]

        async def ours_remove(i: int) -> None:
            await ours_slot.store.remove_session(ours_slot.made[i])

        async def fresh_prepare(n: int) -> None:
            fresh.keys = [str(uuid.uuid4()) for _ in range(n)]
            fresh.table = {k: blobs[i % n_users] for i, k in enumerate(fresh.keys)}

        async def pop_bare(i: int) -> Any:
            return fresh.table.pop(fresh.keys[i])

        async def pop_decode(i: int) -> Any:
            return decode(fresh.table.pop(fresh.keys[i]))

        return [
            Contender("ours", "ours", ours_remove, ours_prepare),
            Contender("floor: dict", "floor", pop_bare, fresh_prepare),
            Contender("floor: dict+decode", "floor", pop_decode, fresh_prepare),
        ]

    raise ValueError(f"unknown operation {op!r}")


async def run_memory_op(
    op: str, size: int, profile: Profile, *, tick: Callable[[], None]
) -> list[dict[str, Any]]:
    pop = Population(size, USERS)
    contenders = await memory_contenders(op, pop)
    lat = await batched_async_latency(
        contenders,
        rounds=profile.rounds,
        batches=profile.memory_batches,
        batch=profile.memory_batch,
        seconds=profile.memory_seconds,
        warmup=200,
        tick=tick,
    )
    return latency_rows(
        "memory", op, size=size, blob_bytes=pop.blob_size, contenders=contenders, lat=lat
    )
