"""Other async libraries: the in-memory store works under trio as under asyncio (it awaits only
anyio primitives), and the Redis store, which redis-py ties to asyncio, says so clearly."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _pytest.mark.structures import ParameterSet

from greentic_session import (
    ConflictError,
    InMemorySessionStore,
    InvalidInputError,
    RedisSessionStore,
    SessionData,
    TenantCtx,
)
from greentic_session.testing import BACKENDS
from tests import test_conformance, test_lifecycle
from tests.conftest import Lifecycle, ManualClock, make_data

ALICE = TenantCtx.new("dev", "tenant-42", team="support", user="alice")


async def memory_flow() -> None:
    clock = ManualClock()
    async with InMemorySessionStore(idle_ttl=60, clock=clock) as store:

        async def build() -> SessionData:
            await anyio.lowlevel.checkpoint()
            return make_data(ALICE, state="[]")

        def add(n: int):  # type: ignore[no-untyped-def]
            def change(data: SessionData) -> SessionData:
                items = [*json.loads(data.context_json), n]
                return msgspec.structs.replace(data, context_json=json.dumps(items))

            return change

        async def message(n: int) -> None:
            entry, _ = await store.find_or_create(ALICE, "alice", build)
            await anyio.lowlevel.checkpoint()
            await store.update_with(entry.key, add(n), attempts=100)

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(message, n)
        found = await store.find_entry(ALICE, "alice")
        assert found is not None
        assert sorted(json.loads(found.data.context_json)) == list(range(20))
        with pytest.raises(ConflictError):
            await store.create_session(ALICE, make_data(ALICE), key=found.key)
        clock.now += 61
        assert await store.get_session(found.key) is None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_memory_store_runs_under_asyncio_and_trio(backend: str) -> None:
    """20 racing messages through find_or_create + update_with all land, under either library."""
    anyio.run(memory_flow, backend=backend)


def test_the_redis_store_under_trio_says_it_needs_asyncio(redis_url: str, namespace: str) -> None:
    """A Redis store called from trio raises InvalidInputError naming asyncio, not RuntimeError."""

    async def call() -> None:
        store = RedisSessionStore.from_url(redis_url, namespace=namespace)
        with pytest.raises(InvalidInputError, match="asyncio only"):
            await store.get_session("any")

    anyio.run(call, backend="trio")


# -- the in-memory contract, run under trio ----------------------------------------------------

MEMORY = next(backend for backend in BACKENDS if not backend.needs_redis)


def _contract_cases() -> list[Any]:
    """Every contract test of test_conformance and test_lifecycle, with each parametrize case
    expanded, for the in-memory backend."""
    cases = []
    for module in (test_conformance, test_lifecycle):
        for name, test in sorted(vars(module).items()):
            if not name.startswith("test_") or not inspect.iscoroutinefunction(test):
                continue
            fixture, *rest = inspect.signature(test).parameters
            assert fixture in ("store", "lifecycle"), f"{name}: a contract test takes a store"
            combos: list[dict[str, Any]] = [{}]
            for mark in getattr(test, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                argnames = mark.args[0]
                names = (
                    [n.strip() for n in argnames.split(",")]
                    if isinstance(argnames, str)
                    else list(argnames)
                )
                values = [v.values if isinstance(v, ParameterSet) else v for v in mark.args[1]]
                rows = [
                    dict(zip(names, v if len(names) > 1 else (v,), strict=True)) for v in values
                ]
                combos = [{**combo, **row} for combo in combos for row in rows]
            for n, combo in enumerate(combos):
                assert set(combo) == set(rest), f"{name}: an argument no parametrize gives"
                cases.append(pytest.param(test, fixture, combo, id=f"{name}-{n}"))
    return cases


@pytest.mark.parametrize(("test", "fixture", "arguments"), _contract_cases())
def test_the_memory_contract_holds_under_trio(
    test: Callable[..., Awaitable[None]], fixture: str, arguments: dict[str, Any]
) -> None:
    """Every conformance and lifecycle test passes on the in-memory store under trio."""

    async def main() -> None:
        if fixture == "store":
            async with MEMORY.open(namespace="trio") as store:
                await test(store, **arguments)
            return
        lifecycle = Lifecycle(MEMORY, None, "trio")
        try:
            await test(lifecycle, **arguments)
        finally:
            for store in lifecycle.opened:
                await store.aclose()

    anyio.run(main, backend="trio")
