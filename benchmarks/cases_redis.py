"""Case 1 and 2: the Redis backend, operation by operation, beside its floor and peers.

For each operation and payload size, in a fresh namespace, four contenders run interleaved:

- ours:    `RedisSessionStore` (opened from the shared backend table) doing the real call;
- floor:   raw redis.asyncio on the store's own client and pool doing the least work the
           operation needs, payload pre-encoded (GET for reads, MULTI SET+SET for create, one
           SET for update, one DEL of blob and pointer for remove);
- aiogram: aiogram 3's `RedisStorage` with the payload as a dict: `get_data` for reads,
           `set_data` for writes, `set_data({})` (a DEL) for remove;
- seed:    `SeedPatternStore`, the original Rust crate's access pattern.

The wait operations run beside their raw-redis floors and a replay of the Rust crate's
command sequence (one command per round trip, as `greentic-session` 0.5 sends them):
`register_wait` (re-registering the user's wait: SET blob, SADD, SET scope pointer),
`find_wait_by_scope` (GET scope pointer, then GET blob), `list_waits_1` / `list_waits_5` (SMEMBERS,
then an EXISTS per member, for a user with 1 or 5 waits).

The lifecycle operations run beside their floors and beside the calls they build on:
`update_cas` (update_session with expected_revision) beside a plain update and a SET;
`update_with` (uncontended) beside get_session + update_session; `find_or_create` (the found
path) beside find_by_user and a GET; `create_idle` and `update_idle` (a store with idle_ttl)
beside the same call on a store without expiry.

Reported per contender: per-call latency at concurrency 1 (median, p99), ops/s at concurrency
64, and for one call: client round trips, new connections and server commands.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from greentic_session import ReplyScope, SessionKey
from greentic_session.backends.redis import RedisSessionStore
from greentic_session.fence import lookup_slot

from .harness import Contender, Summary, latency, rates
from .payloads import Population
from .seed_store import SeedPatternStore
from .settings import Profile
from .stores import delete_namespace, open_redis_store
from .wire import WireCounter, command_deltas, commandstats, server_cpu_seconds

__all__ = ["BUILDERS", "REDIS_OPS", "Rig", "delete_namespace", "open_redis_store", "run_redis_op"]

REDIS_OPS: tuple[str, ...] = (
    "create",
    "get",
    "update",
    "find_by_user",
    "remove",
    "update_cas",
    "update_with",
    "find_or_create",
    "create_idle",
    "update_idle",
    "register_wait",
    "find_wait_by_scope",
    "list_waits_1",
    "list_waits_5",
)
IDLE_TTL = 3600.0  # the expiring store's idle_ttl: long enough never to expire during a run
USERS = 64  # distinct users (and sessions) each case cycles through
WIRE_OPS = 21  # one call for round trips, then 20 for command counts


async def _unlink(client: aioredis.Redis, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), 2000):
        chunk = keys[start : start + 2000]
        if chunk:
            await client.unlink(*chunk)


@dataclass
class Rig:
    """Everything one (operation, size) case needs, under its own namespace."""

    url: str
    namespace: str
    pop: Population
    store: RedisSessionStore
    aiogram: RedisStorage
    seed: SeedPatternStore
    expiring: RedisSessionStore  # the same namespace, with idle_ttl
    ids: list[SessionKey] = field(default_factory=list)
    revisions: list[str] = field(default_factory=list)
    waits: int = 0  # waits registered per user so far (the wait rows register them once)
    blob_keys: list[str] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    skeys: list[StorageKey] = field(default_factory=list)

    @property
    def client(self) -> aioredis.Redis:
        return self.store.client

    @classmethod
    async def open(
        cls, url: str, namespace: str, pop: Population, *, max_connections: int = 64
    ) -> Rig:
        """`max_connections`: the pool size of the store's redis-py pool (which the floors
        share; the batched store itself writes on its own few connections) and of aiogram's."""
        store = open_redis_store(url, namespace, max_connections=max_connections)
        storage = RedisStorage.from_url(
            url,
            connection_kwargs={"max_connections": max_connections},
            key_builder=DefaultKeyBuilder(prefix=f"{namespace}:aiogram"),
        )
        seed = SeedPatternStore(url, namespace=namespace)
        expiring = open_redis_store(url, namespace, idle_ttl=IDLE_TTL)
        rig = cls(url, namespace, pop, store, storage, seed, expiring)
        for ctx, data, user in zip(pop.ctxs, pop.datas, pop.users, strict=True):
            key = await store.create_session(ctx, data)
            entry = await store.get_entry(key)
            assert entry is not None
            rig.ids.append(key)
            # Every write below stores the same bytes again, so this revision stays current.
            rig.revisions.append(entry.revision)
            rig.blob_keys.append(store.keys.session(key))
            rig.pointers.append(store.keys.user(lookup_slot(ctx, user)))
        rig.skeys = [StorageKey(bot_id=1, chat_id=j, user_id=j) for j in range(pop.count)]
        for skey in rig.skeys:
            await storage.set_data(skey, pop.payload_dict)
        await rig._sanity()
        return rig

    async def _sanity(self) -> None:
        """Every contender reads back what the others wrote, before any timing."""
        pop = self.pop
        if await self.store.get_session(self.ids[0]) != pop.datas[0]:
            raise AssertionError("ours: get_session does not return the stored data")
        if await self.client.get(self.blob_keys[0]) != pop.blobs[0]:
            raise AssertionError("floor: the blob is not the codec's bytes")
        if await self.aiogram.get_data(self.skeys[0]) != pop.payload_dict:
            raise AssertionError("aiogram: get_data does not return the payload")
        if await self.seed.get_session(self.ids[0]) != pop.datas[0]:
            raise AssertionError("seed: get_session does not return the stored data")
        found = await self.store.find_by_user(pop.ctxs[1], pop.users[1])
        if found is None or found[0] != self.ids[1]:
            raise AssertionError("ours: find_by_user does not follow the pointer")

    async def close(self) -> None:
        await delete_namespace(self.client, self.namespace)
        await self.store.aclose()
        await self.expiring.aclose()
        await self.aiogram.close()


def _create(rig: Rig) -> list[Contender]:
    pop, store, client, n_users = rig.pop, rig.store, rig.client, rig.pop.count
    ours_made: list[str] = []
    seed_made: list[str] = []
    fresh_ids: list[str] = []
    fresh_keys: list[str] = []

    async def ours(i: int) -> None:
        j = i % n_users
        ours_made.append(await store.create_session(pop.ctxs[j], pop.datas[j]))

    async def seed(i: int) -> None:
        j = i % n_users
        seed_made.append(await rig.seed.create_session(pop.ctxs[j], pop.datas[j]))

    async def floor_prepare(n: int) -> None:
        fresh_ids[:] = [str(uuid.uuid4()) for _ in range(n)]
        fresh_keys[:] = [store.keys.session(k) for k in fresh_ids]

    async def floor(i: int) -> None:
        j = i % n_users
        pipe = client.pipeline(transaction=True)
        pipe.set(fresh_keys[i], pop.blobs[j])
        pipe.set(rig.pointers[j], fresh_ids[i])
        await pipe.execute()

    async def aiogram(i: int) -> None:
        await rig.aiogram.set_data(rig.skeys[i % n_users], pop.payload_dict)

    def cleaner(made: list[str]) -> Callable[[], Any]:
        async def finish() -> None:
            await _unlink(client, [store.keys.session(k) for k in made])
            made.clear()

        return finish

    async def floor_finish() -> None:
        await _unlink(client, fresh_keys)

    return [
        Contender("ours", "ours", ours, finish=cleaner(ours_made)),
        Contender("floor: MULTI SET+SET", "floor", floor, floor_prepare, floor_finish),
        Contender("aiogram set_data", "peer", aiogram),
        Contender("seed pattern", "seed", seed, finish=cleaner(seed_made)),
    ]


def _get(rig: Rig) -> list[Contender]:
    n_users, client = rig.pop.count, rig.client

    async def ours(i: int) -> None:
        await rig.store.get_session(rig.ids[i % n_users])

    async def floor(i: int) -> None:
        await client.get(rig.blob_keys[i % n_users])

    async def aiogram(i: int) -> None:
        await rig.aiogram.get_data(rig.skeys[i % n_users])

    async def seed(i: int) -> None:
        await rig.seed.get_session(rig.ids[i % n_users])

    return [
        Contender("ours", "ours", ours),
        Contender("floor: GET", "floor", floor),
        Contender("aiogram get_data", "peer", aiogram),
        Contender("seed pattern", "seed", seed),
    ]


def _find_by_user(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.find_by_user(pop.ctxs[j], pop.users[j])

    async def floor(i: int) -> None:
        await client.get(rig.blob_keys[i % pop.count])

    async def aiogram(i: int) -> None:
        await rig.aiogram.get_data(rig.skeys[i % pop.count])

    async def seed(i: int) -> None:
        j = i % pop.count
        await rig.seed.find_by_user(pop.ctxs[j], pop.users[j])

    return [
        Contender("ours", "ours", ours),
        Contender("floor: GET", "floor", floor),
        Contender("aiogram get_data", "peer", aiogram),
        Contender("seed pattern", "seed", seed),
    ]


def _update(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.update_session(rig.ids[j], pop.datas[j])

    async def floor(i: int) -> None:
        j = i % pop.count
        await client.set(rig.blob_keys[j], pop.blobs[j])

    async def aiogram(i: int) -> None:
        await rig.aiogram.set_data(rig.skeys[i % pop.count], pop.payload_dict)

    async def seed(i: int) -> None:
        j = i % pop.count
        await rig.seed.update_session(rig.ids[j], pop.datas[j])

    return [
        Contender("ours", "ours", ours),
        Contender("floor: SET", "floor", floor),
        Contender("aiogram set_data", "peer", aiogram),
        Contender("seed pattern", "seed", seed),
    ]


def _remove(rig: Rig) -> list[Contender]:
    """Each batch removes sessions written for it beforehand (untimed, pipelined)."""
    pop, client, keys = rig.pop, rig.client, rig.store.keys
    doomed: list[str] = []
    doomed_keys: list[str] = []
    doomed_skeys: list[StorageKey] = []
    aiogram_blob = rig.aiogram.json_dumps(pop.payload_dict)

    async def prepare(n: int) -> None:
        doomed[:] = [str(uuid.uuid4()) for _ in range(n)]
        doomed_keys[:] = [keys.session(k) for k in doomed]
        for start in range(0, n, 500):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + 500)):
                pipe.set(doomed_keys[i], pop.blobs[i % pop.count])
                pipe.set(rig.pointers[i % pop.count], doomed[i])
            await pipe.execute()

    async def finish() -> None:
        await _unlink(client, doomed_keys)

    async def aiogram_prepare(n: int) -> None:
        base = pop.count
        doomed_skeys[:] = [StorageKey(bot_id=1, chat_id=base + i, user_id=i) for i in range(n)]
        build = rig.aiogram.key_builder.build
        for start in range(0, n, 500):
            pipe = client.pipeline(transaction=False)
            for skey in doomed_skeys[start : start + 500]:
                pipe.set(build(skey, "data"), aiogram_blob)
            await pipe.execute()

    async def aiogram_finish() -> None:
        build = rig.aiogram.key_builder.build
        await _unlink(client, [build(skey, "data") for skey in doomed_skeys])

    async def ours(i: int) -> None:
        await rig.store.remove_session(doomed[i])

    async def floor(i: int) -> None:
        await client.delete(doomed_keys[i], rig.pointers[i % pop.count])

    async def aiogram(i: int) -> None:
        await rig.aiogram.set_data(doomed_skeys[i], {})

    async def seed(i: int) -> None:
        await rig.seed.remove_session(doomed[i])

    return [
        Contender("ours", "ours", ours, prepare, finish),
        Contender("floor: DEL blob+pointer", "floor", floor, prepare, finish),
        Contender("aiogram set_data({})", "peer", aiogram, aiogram_prepare, aiogram_finish),
        Contender("seed pattern", "seed", seed, prepare, finish),
    ]


def _update_cas(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.update_session(rig.ids[j], pop.datas[j], expected_revision=rig.revisions[j])

    async def plain(i: int) -> None:
        j = i % pop.count
        await rig.store.update_session(rig.ids[j], pop.datas[j])

    async def floor(i: int) -> None:
        j = i % pop.count
        await client.set(rig.blob_keys[j], pop.blobs[j])

    return [
        Contender("ours", "ours", ours),
        Contender("ours: update_session", "peer", plain),
        Contender("floor: SET", "floor", floor),
    ]


def _update_with(rig: Rig) -> list[Contender]:
    pop = rig.pop

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.update_with(rig.ids[j], lambda _: pop.datas[j])

    async def get_then_update(i: int) -> None:
        j = i % pop.count
        await rig.store.get_session(rig.ids[j])
        await rig.store.update_session(rig.ids[j], pop.datas[j])

    return [
        Contender("ours", "ours", ours),
        Contender("ours: get_session+update_session", "peer", get_then_update),
    ]


def _find_or_create(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    def unused() -> Any:
        raise AssertionError("the found path never builds")

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.find_or_create(pop.ctxs[j], pop.users[j], unused)

    async def find(i: int) -> None:
        j = i % pop.count
        await rig.store.find_by_user(pop.ctxs[j], pop.users[j])

    async def floor(i: int) -> None:
        await client.get(rig.blob_keys[i % pop.count])

    return [
        Contender("ours", "ours", ours),
        Contender("ours: find_by_user", "peer", find),
        Contender("floor: GET", "floor", floor),
    ]


def _expiring(rig: Rig, op: str) -> list[Contender]:
    """`op` on the idle_ttl store ("ours") beside the same op on the store without expiry."""
    plain = BUILDERS[op](rig)[0]
    ours = BUILDERS[op](dataclasses.replace(rig, store=rig.expiring))[0]
    return [
        ours,
        Contender(f"ours without expiry: {op}", "peer", plain.op, plain.prepare, plain.finish),
    ]


def _scope(j: int, n: int = 0) -> ReplyScope:
    return ReplyScope(conversation=f"chat-{j}-{n}")


async def _register_waits(rig: Rig, per_user: int) -> None:
    """Each user gets `per_user` waits, keys `wait-{j}-{n}` (untimed setup)."""
    pop = rig.pop
    for j in range(pop.count):
        for n in range(per_user):
            key = f"wait-{j}-{n}"
            await rig.store.register_wait(
                pop.ctxs[j], pop.users[j], _scope(j, n), key, pop.datas[j]
            )


def _waits_ready(rig: Rig, per_user: int) -> Callable[[int], Awaitable[None]]:
    """A contender's untimed `prepare`: every user has at least `per_user` waits."""

    async def prepare(_n: int) -> None:
        if rig.waits < per_user:
            await _register_waits(rig, per_user)
            rig.waits = per_user

    return prepare


def _wait_keys(rig: Rig, j: int, n: int = 0) -> tuple[str, str, str]:
    """(blob key, user SET key, scope pointer key) of wait `n` of user `j`."""
    slot = lookup_slot(rig.pop.ctxs[j], rig.pop.users[j])
    keys = rig.store.keys
    scope_key = keys.wait_scope(slot, _scope(j, n).scope_hash())
    return keys.session(f"wait-{j}-{n}"), keys.wait_user(slot), scope_key


def _register_wait(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    prepare = _waits_ready(rig, 1)

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.register_wait(
            pop.ctxs[j], pop.users[j], _scope(j), f"wait-{j}-0", pop.datas[j]
        )

    async def rust(i: int) -> None:
        j = i % pop.count
        blob_key, set_key, scope_key = _wait_keys(rig, j)
        await client.set(blob_key, pop.blobs[j])
        await client.sadd(set_key, f"wait-{j}-0")
        await client.set(scope_key, f"wait-{j}-0")

    async def floor(i: int) -> None:
        j = i % pop.count
        blob_key, set_key, scope_key = _wait_keys(rig, j)
        pipe = client.pipeline(transaction=True)
        pipe.set(blob_key, pop.blobs[j])
        pipe.sadd(set_key, f"wait-{j}-0")
        pipe.set(scope_key, f"wait-{j}-0")
        await pipe.execute()

    return [
        Contender("ours", "ours", ours, prepare),
        Contender("Rust 0.5 replay: SET, SADD, SET", "seed", rust, prepare),
        Contender("floor: MULTI SET+SADD+SET", "floor", floor, prepare),
    ]


def _find_wait(rig: Rig) -> list[Contender]:
    pop, client = rig.pop, rig.client

    prepare = _waits_ready(rig, 1)

    async def ours(i: int) -> None:
        j = i % pop.count
        await rig.store.find_wait_by_scope(pop.ctxs[j], pop.users[j], _scope(j))

    async def rust(i: int) -> None:
        j = i % pop.count
        _, _, scope_key = _wait_keys(rig, j)
        key = await client.get(scope_key)
        await client.get(rig.store.keys.session(key.decode()))

    async def floor(i: int) -> None:
        await client.get(_wait_keys(rig, i % pop.count)[2])

    return [
        Contender("ours", "ours", ours, prepare),
        Contender("Rust 0.5 replay: GET, GET", "seed", rust, prepare),
        Contender("floor: GET", "floor", floor, prepare),
    ]


def _list_waits(per_user: int) -> Callable[[Rig], list[Contender]]:
    def build(rig: Rig) -> list[Contender]:
        pop, client = rig.pop, rig.client

        prepare = _waits_ready(rig, per_user)

        async def ours(i: int) -> None:
            j = i % pop.count
            await rig.store.list_waits_for_user(pop.ctxs[j], pop.users[j])

        async def rust(i: int) -> None:
            _, set_key, _ = _wait_keys(rig, i % pop.count)
            for member in await client.smembers(set_key):
                await client.exists(rig.store.keys.session(member.decode()))

        async def floor(i: int) -> None:
            await client.smembers(_wait_keys(rig, i % pop.count)[1])

        return [
            Contender("ours", "ours", ours, prepare),
            Contender("Rust 0.5 replay: SMEMBERS, EXISTS each", "seed", rust, prepare),
            Contender("floor: SMEMBERS", "floor", floor, prepare),
        ]

    return build


BUILDERS: dict[str, Callable[[Rig], list[Contender]]] = {
    "create": _create,
    "get": _get,
    "update": _update,
    "find_by_user": _find_by_user,
    "remove": _remove,
    "update_cas": _update_cas,
    "update_with": _update_with,
    "find_or_create": _find_or_create,
    "create_idle": lambda rig: _expiring(rig, "create"),
    "update_idle": lambda rig: _expiring(rig, "update"),
    "register_wait": _register_wait,
    "find_wait_by_scope": _find_wait,
    "list_waits_1": _list_waits(1),
    "list_waits_5": _list_waits(5),
}


async def _wire(rig: Rig, contenders: Sequence[Contender]) -> dict[str, dict[str, Any]]:
    """Round trips and new connections of one call; server commands averaged over 20."""
    counter = WireCounter()
    out: dict[str, dict[str, Any]] = {}
    for c in contenders:
        await c.prepare(WIRE_OPS)
        counter.reset()
        with counter.installed():
            await c.op(0)
        before = await commandstats(rig.client)
        for i in range(1, WIRE_OPS):
            await c.op(i)
        after = await commandstats(rig.client)
        await c.finish()
        calls, usec = command_deltas(before, after, WIRE_OPS - 1)
        out[c.label] = {
            "round_trips": counter.round_trips,
            "connects": counter.connects,
            "commands": calls,
            "server_usec": usec,
        }
    return out


async def run_redis_op(
    url: str,
    op: str,
    size: int,
    profile: Profile,
    *,
    run_id: str,
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    """Measure one operation at one payload size; one result row per contender."""
    pop = Population(size, USERS)
    rig = await Rig.open(url, f"bench:{run_id}:redis:{op}:{size}", pop)
    try:
        contenders = BUILDERS[op](rig)
        lat = await latency(
            contenders,
            rounds=profile.rounds,
            ops=profile.redis_latency_ops,
            seconds=profile.redis_latency_seconds,
            warmup=profile.redis_warmup,
            server_cpu=lambda: server_cpu_seconds(rig.client),
            tick=tick,
        )
        tput = await rates(
            contenders,
            rounds=profile.rounds,
            ops=profile.redis_throughput_ops,
            seconds=profile.redis_throughput_seconds,
            concurrency=profile.concurrency,
            warmup=profile.redis_warmup,
            tick=tick,
        )
        wire = await _wire(rig, contenders)
        tick()
    finally:
        await rig.close()
    return [
        {
            "section": "redis",
            "op": op,
            "size": size,
            "blob_bytes": pop.blob_size,
            "label": c.label,
            "role": c.role,
            "latency_ns": Summary.of(lat.samples[c.label]).as_dict(),
            "client_cpu_ns": round(lat.client_cpu_ns[c.label]),
            "server_cpu_ns": lat.server_cpu_ns[c.label],
            "concurrency": profile.concurrency,
            "ops_per_s": Summary.of(tput.ops_per_s[c.label]).as_dict(),
            **wire[c.label],
        }
        for c in contenders
    ]
