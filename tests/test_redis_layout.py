"""What only Redis has: the Rust-shared key layout, Rust-written data, and the cost of each call."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError

from greentic_session import (
    InvalidInputError,
    RedisSessionStore,
    SessionData,
    TenantCtx,
    decode_session_data,
    encode_session_data,
)
from greentic_session.backends.redis.connection import BatchedConnection
from greentic_session.fence import owner_slot, scope_of
from greentic_session.testing import RedisServer
from tests.conftest import drop_namespace, make_data
from tests.identities import ALICE

WIRE = Path(__file__).resolve().parent / "wire" / "session_data.json"


@pytest.fixture
async def redis_store(redis_url: str, namespace: str) -> AsyncIterator[RedisSessionStore]:
    async with RedisSessionStore.from_url(redis_url, namespace=namespace) as store:
        yield store
    await drop_namespace(redis_url, namespace)


async def raw_keys(store: RedisSessionStore) -> dict[str, bytes]:
    client = store.client
    keys = [key async for key in client.scan_iter(match=f"{store.keys.namespace}:*")]
    return {key.decode(): await client.get(key) for key in keys}


async def test_create_update_remove_leave_exactly_the_rust_layout(
    redis_store: RedisSessionStore, namespace: str
) -> None:
    """Keys and bytes are `{ns}:session:{key}` and `{ns}:user:{env}:{tenant}:{team}:{user}`."""
    data = make_data(ALICE, state='{"a":1}')
    key = await redis_store.create_session(ALICE, data)
    assert await raw_keys(redis_store) == {
        f"{namespace}:session:{key}": encode_session_data(data),
        f"{namespace}:user:dev:tenant-42:support:alice": key.encode(),
    }
    updated = make_data(ALICE, state='{"a":2}')
    await redis_store.update_session(key, updated)
    assert (await raw_keys(redis_store))[f"{namespace}:session:{key}"] == (
        encode_session_data(updated)
    )
    await redis_store.remove_session(key)
    assert await raw_keys(redis_store) == {}


async def test_missing_team_is_a_dash_in_the_pointer_key(
    redis_store: RedisSessionStore, namespace: str
) -> None:
    """A session without a team is pointed to from `...:{tenant}:-:{user}`."""
    ctx = TenantCtx.new("prod", "acme", user="u1")
    key = await redis_store.create_session(ctx, make_data(ctx))
    assert await redis_store.client.get(f"{namespace}:user:prod:acme:-:u1") == key.encode()


async def test_default_namespace_is_the_rust_one(redis_url: str) -> None:
    """Without a namespace the keys start with `greentic:session:`, as the Rust crate's do."""
    async with RedisSessionStore.from_url(redis_url) as store:
        assert store.keys.session("k") == "greentic:session:session:k"


async def test_sessions_written_by_a_rust_runner_are_found_and_updated(
    redis_store: RedisSessionStore, namespace: str
) -> None:
    """Blob bytes and a pointer laid down as Rust writes them are read, found and updated."""
    for vector in json.loads(WIRE.read_text(encoding="utf-8")):
        blob = vector["json"].encode()
        ctx = decode_session_data(blob).tenant_ctx
        key = f"rust-{vector['name']}"
        team = ctx.normalized_team or "-"
        user = ctx.normalized_user or "someone"
        await redis_store.client.set(f"{namespace}:session:{key}", blob)
        pointer = f"{namespace}:user:{ctx.env}:{ctx.tenant_id}:{team}:{user}"
        await redis_store.client.set(pointer, key)
        assert await redis_store.find_by_user(ctx, user) == (key, decode_session_data(blob))
        resumed = msgspec.structs.replace(decode_session_data(blob), context_json="{}")
        await redis_store.update_session(key, resumed)
        assert await redis_store.get_session(key) == resumed


@pytest.mark.parametrize(
    ("stored", "new"),
    [
        pytest.param(
            msgspec.structs.replace(ALICE, team="label", team_id="support"),
            ALICE,
            id="team_id-wins-over-team",
        ),
        pytest.param(
            msgspec.structs.replace(ALICE, user=None, user_id="alice"),
            msgspec.structs.replace(ALICE, user="alice", user_id=None),
            id="user-spelled-either-way",
        ),
    ],
)
async def test_server_side_owner_check_normalizes_like_the_fence(
    redis_store: RedisSessionStore, stored: TenantCtx, new: TenantCtx
) -> None:
    """The Lua owner check accepts exactly what fence.scope_of calls the same owner."""
    key = await redis_store.create_session(stored, make_data(stored))
    await redis_store.update_session(key, make_data(new, node="moved"))
    assert await redis_store.get_session(key) == make_data(new, node="moved")
    with pytest.raises(InvalidInputError, match=r"\(team\)"):
        await redis_store.update_session(key, make_data(new.with_team("other")))


async def test_store_refuses_a_client_that_retries_writes(redis_url: str) -> None:
    """A client whose redis-py retries are on is refused; one without works and stays open."""
    parts = urlsplit(redis_url)
    host, port = parts.hostname, parts.port
    for retrying in [
        aioredis.Redis(
            host=host or "127.0.0.1", port=port or 6379
        ),  # redis-py's default: 10 retries
        aioredis.Redis.from_url(redis_url, retry=Retry(ExponentialBackoff(), 3)),
        aioredis.Redis.from_url(redis_url, retry_on_error=[ConnectionError]),
    ]:
        with pytest.raises(InvalidInputError, match="retries"):
            RedisSessionStore(retrying)
        await retrying.aclose()

    client = aioredis.Redis.from_url(
        redis_url, retry=Retry(NoBackoff(), 0), single_connection_client=True
    )
    connection_id = await client.client_id()
    async with RedisSessionStore(client, namespace="byo-client") as store:
        assert await store.get_session("missing") is None
    # Same server-side connection id: the store did not close (and so reconnect) the client.
    assert await client.client_id() == connection_id
    await client.aclose()


@contextmanager
def counting_round_trips() -> Iterator[list[int]]:
    """Count writes of commands to the socket (each is one round trip for this store), by
    redis-py's connections and by the batching transport's (one write per batch)."""
    sent = [0]
    original = AbstractConnection.send_packed_command
    original_flush = BatchedConnection._flush

    async def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        await original(self, command, check_health)  # type: ignore[arg-type]

    def counted_flush(self: BatchedConnection) -> None:
        before = self.batches
        original_flush(self)
        sent[0] += self.batches - before

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    BatchedConnection._flush = counted_flush  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        BatchedConnection._flush = original_flush  # type: ignore[method-assign]


@pytest.mark.parametrize("batching", [False, True], ids=["redis-py", "batched"])
async def test_round_trips_per_call(redis_url: str, namespace: str, batching: bool) -> None:
    """Every operation, remove included, takes one round trip, batched or not."""
    async with RedisSessionStore.from_url(
        redis_url, namespace=namespace, batching=batching
    ) as redis_store:
        await _count_round_trips(redis_store)


async def _count_round_trips(redis_store: RedisSessionStore) -> None:
    await redis_store.get_session("warm-up")  # connect and load nothing yet
    data = make_data(ALICE)
    key = await redis_store.create_session(ALICE, data)
    await redis_store.find_by_user(ALICE, "alice")  # scripts are loaded once, then cached
    await redis_store.update_session(key, data)
    spare = await redis_store.create_session(ALICE, data)
    await redis_store.remove_session(spare)

    counts: dict[str, int] = {}
    for name, call in [
        ("create", lambda: redis_store.create_session(ALICE, data)),
        ("get", lambda: redis_store.get_session(key)),
        ("find_by_user", lambda: redis_store.find_by_user(ALICE, "alice")),
        ("update", lambda: redis_store.update_session(key, data)),
        ("remove", lambda: redis_store.remove_session(key)),
    ]:
        with counting_round_trips() as sent:
            await call()
        counts[name] = sent[0]
    assert counts == {"create": 1, "get": 1, "find_by_user": 1, "update": 1, "remove": 1}


async def test_unix_socket_urls_work() -> None:
    """A `unix://` URL reaches a server listening on a Unix socket and runs the whole flow."""
    # A socket path must be under 108 bytes: not under pytest's tmp_path, which lies inside the
    # checkout when nox sets TMPDIR, wherever the checkout is.
    with tempfile.TemporaryDirectory(prefix="gs-", dir="/tmp") as folder:
        await unix_socket_flow(Path(folder) / "redis.sock")


async def unix_socket_flow(socket_path: Path) -> None:
    """The whole flow through a server listening only on `socket_path`."""
    with RedisServer(extra_args=["--unixsocket", str(socket_path), "--unixsocketperm", "700"]):
        async with RedisSessionStore.from_url(f"unix://{socket_path}", namespace="unix") as store:
            key = await store.create_session(ALICE, make_data(ALICE))
            assert await store.find_by_user(ALICE, "alice") == (key, make_data(ALICE))
            await store.remove_session(key)
            assert "unix://" in repr(store)


_spelling = st.sampled_from([None, "x", "y"])
_owner_contexts = st.builds(
    lambda team, team_id, user, user_id, trace, attrs: TenantCtx(
        env="dev",
        tenant="t",
        tenant_id="t",
        team=team,
        team_id=team_id,
        user=user,
        user_id=user_id,
        trace_id=trace,
        attributes=attrs,
        attempt=0,
    ),
    _spelling,
    _spelling,
    _spelling,
    _spelling,
    st.sampled_from([None, "trace-1"]),
    st.sampled_from([{}, {"team": "x"}, {"user_id": "y", "cursor": "c"}]),
)


# Each example creates its own session, so sharing the fixture's store across examples is safe.
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(stored=_owner_contexts, new=_owner_contexts)
async def test_update_owner_check_agrees_with_the_fence(
    redis_store: RedisSessionStore, stored: TenantCtx, new: TenantCtx
) -> None:
    """For any two owner spellings, a Redis update succeeds iff the fence calls them one owner."""
    key = await redis_store.create_session(stored, make_data(stored))
    replacement = make_data(new, node="moved")
    if scope_of(stored) == scope_of(new):
        await redis_store.update_session(key, replacement)
        assert await redis_store.get_session(key) == replacement
    else:
        with pytest.raises(InvalidInputError, match="tenant fence"):
            await redis_store.update_session(key, replacement)
        assert await redis_store.get_session(key) == make_data(stored)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(owner=_owner_contexts)
async def test_remove_clears_the_pointer_the_python_layout_names(
    redis_store: RedisSessionStore, owner: TenantCtx
) -> None:
    """remove.lua derives, for any owner spelling, the very pointer key keys.RedisKeys built."""
    key = await redis_store.create_session(owner, make_data(owner))
    slot = owner_slot(scope_of(owner))
    pointer = None if slot is None else redis_store.keys.user(slot)
    if pointer is not None:
        assert await redis_store.client.get(pointer) == key.encode()
    await redis_store.remove_session(key)
    assert await redis_store.get_session(key) is None
    if pointer is not None:
        assert await redis_store.client.exists(pointer) == 0


def _reordered_blob(data: SessionData) -> bytes:
    """The same SessionData with the JSON fields in another order, as another writer might."""
    fields = msgspec.json.decode(encode_session_data(data))
    ctx = dict(reversed(fields.pop("tenant_ctx").items()))
    return msgspec.json.encode({**fields, "tenant_ctx": ctx})


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(_reordered_blob, id="other-field-order"),
        pytest.param(
            lambda data: encode_session_data(
                msgspec.structs.replace(
                    data,
                    tenant_ctx=msgspec.structs.replace(
                        data.tenant_ctx, user="u" * 5000, user_id="u" * 5000
                    ),
                )
            ),
            id="owner-longer-than-the-head",
        ),
    ],
)
async def test_remove_reads_the_owner_of_any_blob_shape(
    redis_store: RedisSessionStore, namespace: str, shape: Callable[[SessionData], bytes]
) -> None:
    """When the owner is not in the blob's head in serde's order, remove decodes the blob."""
    data = make_data(ALICE)
    blob = shape(data)
    stored = decode_session_data(blob)
    slot = owner_slot(scope_of(stored.tenant_ctx))
    assert slot is not None
    pointer = redis_store.keys.user(slot)
    await redis_store.client.set(f"{namespace}:session:odd", blob)
    await redis_store.client.set(pointer, "odd")
    await redis_store.remove_session("odd")
    assert await redis_store.client.exists(f"{namespace}:session:odd", pointer) == 0


async def test_remove_keeps_a_pointer_that_names_another_session(
    redis_store: RedisSessionStore,
) -> None:
    """Removing an older session leaves the owner's pointer to a newer one alone."""
    older = await redis_store.create_session(ALICE, make_data(ALICE))
    newer = await redis_store.create_session(ALICE, make_data(ALICE, node="newer"))
    await redis_store.remove_session(older)
    assert await redis_store.find_by_user(ALICE, "alice") == (newer, make_data(ALICE, node="newer"))
