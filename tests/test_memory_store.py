"""What only the in-memory store has: private structural copies instead of encoded bytes.

The behaviour both backends share is in test_conformance.py; these tests pin down the copy
itself and the schema fact it relies on.
"""

from __future__ import annotations

import msgspec
import pytest

from greentic_session import (
    Impersonation,
    InMemorySessionStore,
    InvalidInputError,
    InvocationDeadline,
    NotFoundError,
    SessionCursor,
    SessionData,
    TenantCtx,
    decode_session_data,
    encode_session_data,
)
from tests.conftest import make_data
from tests.identities import ALICE


def _alice_en() -> TenantCtx:
    """ALICE with attributes in a dict of its own: tests mutate it."""
    return msgspec.structs.replace(ALICE, attributes={"lang": "en"})


# -- the schema fact the copy relies on ------------------------------------------------------

_IMMUTABLE_SCALARS = (
    msgspec.inspect.StrType,
    msgspec.inspect.IntType,
    msgspec.inspect.FloatType,
    msgspec.inspect.BoolType,
    msgspec.inspect.NoneType,
)


def _walk(
    kind: msgspec.inspect.Type,
    path: str,
    mutable: set[str],
    structs: set[type],
) -> None:
    """Record in `mutable` every field path whose type can hold a mutable value, and in
    `structs` every Struct class reachable from `kind`."""
    if isinstance(kind, _IMMUTABLE_SCALARS):
        return
    if isinstance(kind, msgspec.inspect.UnionType):
        for member in kind.types:
            _walk(member, path, mutable, structs)
        return
    if isinstance(kind, msgspec.inspect.StructType) and kind.cls.__struct_config__.frozen:
        if kind.cls in structs:
            return  # already walked (a recursive schema would otherwise never end)
        structs.add(kind.cls)
        for field in kind.fields:
            _walk(field.type, f"{path}.{field.name}" if path else field.name, mutable, structs)
        return
    # dict, list, set, bytearray, a non-frozen Struct, or a type this walk does not know yet.
    mutable.add(path)


def _schema() -> tuple[set[str], set[type]]:
    mutable: set[str] = set()
    structs: set[type] = set()
    _walk(msgspec.inspect.type_info(SessionData), "", mutable, structs)
    return mutable, structs


def test_the_only_mutable_field_is_tenant_ctx_attributes() -> None:
    """Every SessionData field except tenant_ctx.attributes has an immutable type."""
    mutable, _ = _schema()
    assert mutable == {"tenant_ctx.attributes"}, (
        f"SessionData's fields with a mutable type are now {sorted(mutable)}: extend the "
        "in-memory store's copy (_private_copy in greentic_session/backends/memory.py) to copy "
        "each of them, or callers will alias stored state; then update this test"
    )


def test_the_exact_type_check_names_every_struct_of_the_schema() -> None:
    """The Structs the memory store copies structurally are all the Structs of the schema."""
    _, structs = _schema()
    assert structs == {SessionData, TenantCtx, SessionCursor, InvocationDeadline, Impersonation}, (
        f"SessionData now reaches the Structs {sorted(c.__name__ for c in structs)}: extend the "
        "exact-type check in _stored_form (greentic_session/backends/memory.py) so data built "
        "from a subclass of a new Struct goes through the codec, then update this test"
    )


# -- caller-held objects never alias stored state ----------------------------------------------


async def test_mutating_the_callers_attributes_after_create_changes_nothing_stored() -> None:
    """A caller mutating the attributes dict it passed to create never changes later reads."""
    store = InMemorySessionStore()
    data = make_data(_alice_en())
    key = await store.create_session(ALICE, data)
    data.tenant_ctx.attributes["lang"] = "fr"
    data.tenant_ctx.attributes["extra"] = "x"
    got = await store.get_session(key)
    assert got is not None
    assert got.tenant_ctx.attributes == {"lang": "en"}
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(_alice_en()))


async def test_mutating_the_callers_attributes_after_update_changes_nothing_stored() -> None:
    """A caller mutating the attributes dict it passed to update never changes later reads."""
    store = InMemorySessionStore()
    key = await store.create_session(ALICE, make_data(ALICE))
    data = make_data(_alice_en(), node="node.next")
    await store.update_session(key, data)
    data.tenant_ctx.attributes.clear()
    assert await store.get_session(key) == make_data(_alice_en(), node="node.next")
    assert await store.find_by_user(ALICE, "alice") == (
        key,
        make_data(_alice_en(), node="node.next"),
    )


async def test_mutating_a_returned_snapshot_changes_nothing_stored() -> None:
    """Mutating the attributes of what get or find_by_user returned never changes later reads."""
    store = InMemorySessionStore()
    key = await store.create_session(ALICE, make_data(_alice_en()))
    got = await store.get_session(key)
    assert got is not None
    got.tenant_ctx.attributes["lang"] = "de"
    found = await store.find_by_user(ALICE, "alice")
    assert found is not None
    assert found[1].tenant_ctx.attributes == {"lang": "en"}
    found[1].tenant_ctx.attributes["lang"] = "nl"
    assert await store.get_session(key) == make_data(_alice_en())
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(_alice_en()))


async def test_every_read_returns_new_objects_with_equal_values() -> None:
    """Each get and find_by_user returns its own objects, none of them the stored ones."""
    store = InMemorySessionStore()
    key = await store.create_session(ALICE, make_data(_alice_en()))
    first, second = await store.get_session(key), await store.get_session(key)
    found = await store.find_by_user(ALICE, "alice")
    assert first is not None
    assert second is not None
    assert found is not None
    stored = store._sessions[key].data  # the private copy itself, to prove it is never handed out
    snapshots = [stored, first, second, found[1]]
    assert all(s == stored for s in snapshots)
    for objects in (
        snapshots,
        [s.tenant_ctx for s in snapshots],
        [s.tenant_ctx.attributes for s in snapshots],
    ):
        assert len({id(o) for o in objects}) == len(objects)


async def test_the_callers_data_is_not_retained_as_is() -> None:
    """The store keeps a copy of the caller's SessionData, never the object it was given."""
    store = InMemorySessionStore()
    data = make_data(_alice_en())
    key = await store.create_session(ALICE, data)
    got = await store.get_session(key)
    assert got == data
    assert got is not data
    assert got.tenant_ctx is not data.tenant_ctx
    assert got.tenant_ctx.attributes is not data.tenant_ctx.attributes
    stored = store._sessions[key].data
    assert stored is not data
    assert stored.tenant_ctx.attributes is not data.tenant_ctx.attributes


class _TaggedData(SessionData, kw_only=True, frozen=True):
    """A caller's subclass with a mutable field of its own, which the schema does not have."""

    tags: list[str] = msgspec.field(default_factory=list)


async def test_a_subclass_is_stored_as_the_codec_would_return_it() -> None:
    """Data built from a subclass reads back as plain SessionData, sharing none of its fields."""
    store = InMemorySessionStore()
    base = make_data(_alice_en())
    data = _TaggedData(
        tenant_ctx=base.tenant_ctx,
        flow_id=base.flow_id,
        cursor=base.cursor,
        context_json=base.context_json,
        tags=["vip"],
    )
    key = await store.create_session(ALICE, data)
    data.tags.append("later")
    got = await store.get_session(key)
    assert type(got) is SessionData
    assert got == base == decode_session_data(encode_session_data(data))


# -- errors write nothing --------------------------------------------------------------------


async def test_update_checks_the_data_before_looking_the_key_up() -> None:
    """Update refuses a wrong type or unwritable data before reporting a missing key, like Redis."""
    store = InMemorySessionStore()
    with pytest.raises(TypeError, match="SessionData"):
        await store.update_session("missing", {"flow_id": "x"})  # type: ignore[arg-type]
    unwritable = msgspec.structs.replace(make_data(ALICE), context_json="\ud800")
    with pytest.raises(InvalidInputError, match="context_json"):
        await store.update_session("missing", unwritable)
    with pytest.raises(NotFoundError):
        await store.update_session("missing", make_data(ALICE))


async def test_refused_writes_leave_the_store_unchanged() -> None:
    """A create or update refused for its type, its fields or the fence changes nothing stored."""
    store = InMemorySessionStore()
    key = await store.create_session(ALICE, make_data(_alice_en()))
    unwritable = msgspec.structs.replace(make_data(ALICE), cursor="node.wait")
    other_user = make_data(ALICE.with_user("bob"))
    with pytest.raises(TypeError):
        await store.create_session(ALICE, "not data")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cursor"):
        await store.create_session(ALICE, unwritable)
    with pytest.raises(InvalidInputError, match="tenant fence"):
        await store.create_session(ALICE, other_user)
    with pytest.raises(TypeError):
        await store.update_session(key, "not data")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cursor"):
        await store.update_session(key, unwritable)
    with pytest.raises(InvalidInputError, match="tenant fence"):
        await store.update_session(key, other_user)
    assert repr(store) == "InMemorySessionStore(sessions=1, closed=False)"
    assert await store.get_session(key) == make_data(_alice_en())
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(_alice_en()))
    assert await store.find_by_user(ALICE, "bob") is None


# -- expiry ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_memory_of_expired_sessions_is_given_back() -> None:
    """100,000 expired sessions: one call after their expiry frees all but a tenth of the peak.

    (They share one user: the pointer table is not what this measures.)
    """
    import gc
    import tracemalloc

    from tests.conftest import ManualClock

    clock = ManualClock()
    store = InMemorySessionStore(idle_ttl=60, clock=clock)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        cursor = SessionCursor(node_pointer="node.wait")
        for i in range(100_000):
            data = SessionData(
                tenant_ctx=ALICE, flow_id="f", cursor=cursor, context_json=f"{i:0>200}"
            )
            await store.create_session(ALICE, data)
        peak = tracemalloc.get_traced_memory()[0] - base
        clock.now += 61
        assert await store.get_session("any") is None  # any call sweeps what has expired
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert repr(store) == "InMemorySessionStore(sessions=0, closed=False)"
    assert left < peak / 10, (left, peak)


async def test_expired_sessions_leave_no_pointer_behind() -> None:
    """After expiry the pointer table is empty too, and a new session takes the slot."""
    from tests.conftest import ManualClock

    clock = ManualClock()
    store = InMemorySessionStore(idle_ttl=10, clock=clock)
    await store.create_session(ALICE, make_data(ALICE))
    clock.now += 11
    assert await store.find_by_user(ALICE, "alice") is None
    assert store._pointers == {}
    again = await store.create_session(ALICE, make_data(ALICE))
    assert await store.find_by_user(ALICE, "alice") == (again, make_data(ALICE))
