"""RedisSessionStore: the production backend's calls, in the Rust greentic-session key layout.

Round trips per call: get/get_entry 1; create 1 (MULTI SET blob + SET pointer EXEC; create.lua
for a caller's key or with expiry); find_by_user/find_entry 1 (find.lua follows the pointer; a stale
pointer costs a second, compare-and-delete, trip); update 1 (update.lua checks existence, owner and
the expected revision, then SETs); touch 1; remove 1 (remove.lua deletes the blob, its meta key and
the pointer if it still names this session); find_or_create 1 when it finds, 2 when it creates
(create_for_user.lua creates unless a session appeared meanwhile); update_with 2 per try;
register_wait, find_wait_by_scope, list_waits_for_user and clear_wait 1 each (one Lua script
each, in Rust's wait keys plus our hint key: see keys.py and docs/concepts.md, "Waits");
claim_due_waits and settle_due 1 each on a single node (deadlines: due.py, which also says what
they cost on a cluster, where a register_wait with `due_in` takes a second step).

A revision is the SHA-1 of the stored bytes (`revision_of`, and `redis.sha1hex` in update.lua), so a
write by any client, a Rust runner's plain SET included, changes it. Expiry is server-side only:
the scripts give the blob, its pointer and its meta key their TTLs in the step that writes them.
How a store is built lives in `factory`; how calls reach Redis (gate, time limit, retries, error
mapping, cluster routing) in the `caller.Caller` it holds; a cluster's two-step calls on a
caller's key in `split`; each script's KEYS and ARGV in `scripts`, and what its reply means in
`replies`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Self, Unpack, cast

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "The Redis session backend needs the redis extra: pip install 'greentic-session[redis]'"
    ) from exc

from ...codec import decode_session_data, encode_session_data, owner_prefix_length
from ...config import SessionBackendConfig
from ...deadlines import DueWait, check_claim, check_due, due_millis
from ...errors import (
    ConflictError,
    InternalError,
    InvalidInputError,
    StoreClosedError,
    UnavailableError,
)
from ...expiry import Expiry
from ...fence import (
    Scope,
    UserSlot,
    check_create,
    check_find_or_create,
    check_key,
    check_register_wait,
    check_update,
    erase_slot,
    lookup_slot,
    own_slot,
    owner_slot,
    scope_hash_of,
    scope_of,
    visible_to,
    wait_lookup_slot,
    wait_ttl_millis,
)
from ...limits import DEFAULT_MAX_BLOB_BYTES, check_max_blob_bytes
from ...schema import ReplyScope, SessionData, SessionKey, TenantCtx
from ...sealing import MAGIC, Encryption, Sealer
from ...store import SessionBuilder, SessionEntry, SessionStore, StoreOptions, resolve
from . import erase, factory, replies, scripts
from .caller import Caller, ConnectionStats
from .due import RedisDue
from .errors import ClusterRedirect
from .factory import Connection
from .keys import RedisKeys
from .options import (
    DEFAULT_NAMESPACE,
    DEFAULT_POOL_TIMEOUT,
    RedisClusterOptions,
    RedisOptions,
    RedisSentinelOptions,
    RedisStoreOptions,
)
from .replies import FoundBlob
from .split import SplitSteps

__all__ = ["RedisSessionStore", "revision_of"]

# Operator events only, never a user id, session key, payload or secret (see caller.py too).
_log = logging.getLogger("greentic_session.redis")

# Bound once, as replies.py's own: an enum member lookup costs ~0.25 us on Python 3.11.
_IN_OTHER_SLOT = FoundBlob.IN_OTHER_SLOT
# The write scripts' refusals `_explain_refusal` reads the blob for (register_wait.lua's too).
_EXPLAINED = (replies.UpdateReply.SEALED_OWNER_DIFFERS, replies.UpdateReply.CORRUPT)
_SEALED_MAGIC = bytes((MAGIC,))


class _OwnerWrite(NamedTuple):
    """What a sealing store's write by one owner sends: the owner's pointer suffix ('' for
    none), the script tail (seal.lua) naming it as the owner, and its digest for the seal."""

    suffix: str
    tail: tuple[scripts.Arg, ...]
    digest: bytes


# Owners whose writes (pointer suffix, seal.lua tail) a sealing store keeps before it starts over.
_KEPT_WRITES = 1024

# find_or_create's create step retries when the user's pointer names a foreign session that is
# replaced meanwhile; more than a couple of rounds means the slot is being fought over.
_CREATE_ATTEMPTS = 5


def revision_of(blob: bytes) -> str:
    """A stored blob's revision: the SHA-1 hex of its bytes, as update.lua's `redis.sha1hex`."""
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


class _SeenBytes(NamedTuple):
    """The stored bytes update_with read: its compare-and-set token (and their revision, which
    a conflict names: never the bytes, which hold user ids and payloads)."""

    raw: bytes
    revision: str


class RedisSessionStore(SessionStore):
    """Sessions in Redis, in the key layout the Rust greentic-session uses.

    Build it with `from_url(...)`, `create_session_store(SessionBackendConfig.redis_url(...))`, or
    around your own `redis.asyncio.Redis` (created with `retry=Retry(NoBackoff(), 0)`; the store
    does not close a client it was given). `socket_timeout` bounds each call; with None, only the
    client's own redis-py timeouts apply.

    `encryption` (an `Encryption` key ring) and `compression` ("zstd") seal blobs at rest
    (`sealing`): the scripts then check a sealed blob's owner by its digest, and every session
    with a pointer gets a meta key recording it. Without them the bytes are Rust's.
    """

    def __init__(
        self,
        client: aioredis.Redis | Connection,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        socket_timeout: float | None = None,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        encryption: Encryption | None = None,
        compression: Literal["zstd"] | None = None,
    ) -> None:
        # Every store comes through here: around your client (pool_timeout and socket_timeout
        # apply to it), or on the `factory.Connection` a `from_*` constructor built.
        connection = (
            client
            if isinstance(client, Connection)
            else factory.around_client(
                client, pool_timeout=pool_timeout, socket_timeout=socket_timeout
            )
        )
        self._expiry = Expiry(idle_ttl, max_lifetime)
        self._ttl_args = self._expiry.as_millis()
        self._max_blob_bytes = check_max_blob_bytes(max_blob_bytes)
        self.keys = RedisKeys(namespace, cluster=connection.cluster)
        # Every blob read goes through `_opener` (a store without options reads compressed
        # blobs too); writes are sealed, and every script call carries a tail (seal.lua), only
        # when `_sealer` is set.
        self._opener = Sealer(namespace, encryption=encryption, compression=compression)
        self._sealer = None if self._opener.identity else self._opener
        self._owner_writes: dict[Scope, _OwnerWrite] = {}
        self._tail: tuple[scripts.Arg, ...] = (
            () if self._sealer is None else scripts.SEALED_NO_OWNERS
        )
        # On a cluster, find.lua and create_for_user.lua get the pointer's tag (see keys.py).
        self._scripts = scripts.CLUSTER if connection.cluster else scripts.SINGLE_NODE
        self._owns_client = connection.owned
        self._closed = False
        self._where = connection.where
        self._caller: Caller = connection.caller
        self._split = SplitSteps(
            self._caller, self.keys, self._scripts, self._expiry.first_ttl_millis()
        )
        self._due = RedisDue(
            self.keys,
            self._caller,
            lambda key, raw: SessionEntry(
                SessionKey(key), self._decode(key, raw), revision_of(raw)
            ),
            self._opener.lacks_key,
        )
        self.client: aioredis.Redis | None = connection.client

    @classmethod
    def from_options(
        cls,
        options: RedisOptions | RedisSentinelOptions | RedisClusterOptions,
        **store: Unpack[StoreOptions],
    ) -> Self:
        """A store that owns a new client and pool built from `options`."""
        return factory.from_options(cls, options, **store)

    @classmethod
    def from_url(cls, url: str, **options: Unpack[RedisStoreOptions]) -> Self:
        """A store for `url` (`redis://`, `rediss://`, `unix://`; credentials may be in it), for
        the primary of a Sentinel service (`redis+sentinel://`, see `from_sentinel`), or for a
        Redis Cluster (`redis+cluster://host1:port,host2:port`, see `from_cluster`).

        `options` (`RedisStoreOptions`): the `namespace`, the pool's (`RedisPoolOptions`), and
        `idle_ttl`, `max_lifetime` (seconds), `max_blob_bytes`, `encryption` and `compression`,
        the `StoreOptions` every backend takes; as `SessionBackendConfig.redis_url`.
        """
        return factory.from_config(cls, SessionBackendConfig.redis_url(url, **options))

    @classmethod
    def from_sentinel(
        cls,
        sentinel_urls: Sequence[str],
        service_name: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        **options: Unpack[RedisStoreOptions],
    ) -> Self:
        """A store on the primary Sentinel monitors as `service_name` (see
        `SessionBackendConfig.redis_sentinel`); a `redis+sentinel://` URL works with `from_url`."""
        config = SessionBackendConfig.redis_sentinel(
            sentinel_urls, service_name, db=db, username=username, password=password, **options
        )
        return factory.from_config(cls, config)

    @classmethod
    def from_cluster(
        cls, startup_urls: Sequence[str], **options: Unpack[RedisStoreOptions]
    ) -> Self:
        """A store on the Redis Cluster one of `startup_urls` (`redis://` or `rediss://` node
        URLs, same credentials) belongs to (see `SessionBackendConfig.redis_cluster`); a
        `redis+cluster://` URL works with `from_url`."""
        return factory.from_config(cls, SessionBackendConfig.redis_cluster(startup_urls, **options))

    def __repr__(self) -> str:
        sealing = "" if self._sealer is None else f", sealer={self._sealer!r}"
        return f"RedisSessionStore(url={self._where!r}, namespace={self.keys.namespace!r}{sealing})"

    @property
    def sealer(self) -> Sealer:
        """How this store seals and opens blobs (`sealing.Sealer`; the identity without
        options): the CLI opens and reseals raw blobs with it."""
        return self._opener

    @property
    def is_cluster(self) -> bool:
        """Whether this store talks to a Redis Cluster (and uses its tagged key layout)."""
        return self.keys.cluster

    # -- the SessionStore API ------------------------------------------------------------------

    async def create_session(
        self, ctx: TenantCtx, data: SessionData, *, key: str | None = None
    ) -> SessionKey:
        self._check_open()
        if key is not None:
            check_key(key)
        blob = self._encode(data)  # first: the fence reads fields this checks
        _, slot = check_create(ctx, data)
        new_key = self.keys.mint(slot) if key is None else SessionKey(key)
        # On a cluster, a caller's untagged key may hash to another slot than its pointer: the
        # pointer is then written in a second step, after the session exists.
        split = slot is not None and key is not None and self.keys.local_only(key)
        if (
            slot is not None
            and key is not None
            and not split
            and not key.startswith(self.keys.tag(slot))
        ):
            raise InvalidInputError(
                "this session key carries another user's cluster hash tag: build it with "
                "session_key_for(ctx, user_id, key)"
            )
        if self._sealer is not None:
            blob = self._seal(new_key, blob, scope_of(data.tenant_ctx))
        if key is None and not self._expiry.enabled:
            # A fresh random key cannot be taken: a plain MULTI is enough (and cheapest).
            writes: list[tuple[str, str, bytes | str]] = [("SET", self.keys.session(new_key), blob)]
            if slot is not None:
                writes.append(("SET", self.keys.user(slot), new_key))
                if self._sealer is not None:  # the pointer's record (seal.lua)
                    writes.append(("SET", self.keys.meta(new_key), self.keys.slot_suffix(slot)))
            await self._caller.transaction(writes, key=new_key)
            return new_key
        userless = data.tenant_ctx.normalized_user is None
        keys, args = scripts.create_call(
            self.keys, new_key, blob, slot, self._ttl_args, userless=userless, split=split
        )
        args += self._tail
        step = self._caller.eval(self._scripts.CREATE, keys, args, write=True, key=new_key)
        if split:
            assert slot is not None
            step = self._split.create(step, slot, new_key)
        replies.created(await step, new_key)
        return new_key

    def session_key_for(self, ctx: TenantCtx, user_id: str, key: str) -> SessionKey:
        """`key` for a session of `user_id` (in `ctx`'s env, tenant and team): on a Redis
        Cluster led by the user's hash tag, so the session and its pointer and waits share one
        slot and every call on it is one atomic script; unchanged on a single node."""
        check_key(key)
        return self.keys.tagged_key(lookup_slot(ctx, user_id), key)

    async def get_session(self, key: str) -> SessionData | None:
        raw = await self._get_raw(key)
        return None if raw is None else self._decode(key, raw)

    async def get_entry(self, key: str) -> SessionEntry | None:
        raw = await self._get_raw(key)
        if raw is None:
            return None
        return SessionEntry(SessionKey(key), self._decode(key, raw), revision_of(raw))

    async def _get_raw(self, key: str) -> bytes | None:
        """The stored blob (GET): the client returns bytes (it never decodes responses)."""
        self._check_open()
        check_key(key)
        raw = await self._caller.execute("GET", self.keys.session(key), key=key)
        return cast(bytes | None, raw)

    async def update_session(
        self, key: str, data: SessionData, *, expected_revision: str | None = None
    ) -> None:
        await self._write(key, data, expected_revision)

    async def _read_for_update(self, key: str) -> tuple[SessionEntry, object] | None:
        # The bytes read are the token: update.lua compares them with the stored bytes, which
        # is cheaper on the server than hashing the stored blob for a revision.
        raw = await self._get_raw(key)
        if raw is None:
            return None
        entry = SessionEntry(SessionKey(key), self._decode(key, raw), revision_of(raw))
        return entry, _SeenBytes(raw, entry.revision)

    async def _compare_and_set(self, key: str, data: SessionData, token: object) -> str:
        assert isinstance(token, _SeenBytes | str)
        return revision_of(await self._write(key, data, token))

    async def _write(self, key: str, data: SessionData, expected: str | _SeenBytes | None) -> bytes:
        """Run update.lua; return the blob written. `expected` is a revision, the bytes
        `_read_for_update` saw, or None (write whatever is stored)."""
        self._check_open()
        check_key(key)
        check: str | bytes
        if isinstance(expected, _SeenBytes):
            check, compare, revision = expected.raw, "bytes", expected.revision
        elif expected is None:
            check, compare, revision = "", "sha1", ""
        elif isinstance(expected, str) and expected:
            check, compare, revision = expected, "sha1", expected
        else:
            raise InvalidInputError("expected_revision must be a revision str from get_entry")
        blob = self._encode(data)
        owner = scope_of(data.tenant_ctx)
        split = self.keys.local_only(key)
        sealer = self._sealer
        tail: tuple[scripts.Arg, ...] = ()
        if sealer is not None:
            write = self._owner_write(owner)
            blob = sealer.seal(blob, session_key=key, owner_digest=write.digest)
            suffix, tail = write.suffix, write.tail
        elif self._expiry.enabled:
            slot = owner_slot(owner)
            suffix = "" if slot is None else self.keys.slot_suffix(slot)
        else:
            suffix = ""
        keys, args = scripts.update_call(
            self.keys,
            key,
            owner,
            blob,
            owner_prefix_length(data.tenant_ctx) if sealer is None else 0,
            expected=check,
            compare=compare,
            ttl=self._ttl_args,
            # A sealing store records the pointer with or without expiry (update.lua).
            pointer_suffix=suffix,
            split=split,
        )
        args += tail
        step = self._caller.eval(self._scripts.UPDATE, keys, args, write=True, key=key)
        if split:
            step = self._split.write(step, key)
        reply = await step
        if reply in _EXPLAINED:
            await self._explain_refusal(key, data)
        replies.updated(reply, key, revision, data, split=split)
        return blob

    async def touch_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        split = self.keys.local_only(key)
        keys, args = scripts.touch_call(self.keys, key, self._ttl_args, split)
        args += self._tail
        step = self._caller.eval(self._scripts.TOUCH, keys, args, write=True, key=key)
        if split:
            step = self._split.touch(step, key)
        replies.touched(await step, key, split=split)

    async def remove_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        split = self.keys.local_only(key)
        keys, args = scripts.remove_call(self.keys, key, split)
        args += self._tail
        removed = await self._caller.eval(self._scripts.REMOVE, keys, args, write=True, key=key)
        replies.removed(removed, key, split=split)

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        found = await self._find(lookup_slot(ctx, user))
        return None if found is None else (found[0], found[2])

    async def find_entry(self, ctx: TenantCtx, user: str) -> SessionEntry | None:
        self._check_open()
        found = await self._find(lookup_slot(ctx, user))
        return None if found is None else SessionEntry(found[0], found[2], revision_of(found[1]))

    async def _follow(self, script: scripts.Script, call: scripts.Call) -> Any:
        """Run find.lua, or create_for_user.lua (a write); a session they name in another
        cluster slot (`FoundBlob.IN_OTHER_SLOT`) is read there, as a second step: the reply
        then holds its blob."""
        caller, (keys, args) = self._caller, call
        if script is self._scripts.FIND:
            try:
                found = await caller.eval(script, keys, args, moving="raise")
            except ClusterRedirect:
                # The slot is mid-migration: a script could see half its keys. Single-key
                # reads follow the keys wherever they are (ASK), so read one by one.
                found = await caller.execute("GET", keys[0])
                found = None if found is None else [found, FoundBlob.IN_OTHER_SLOT]
        else:
            found = await caller.eval(script, keys, args, write=True)
        if isinstance(found, list) and found[1] == _IN_OTHER_SLOT:
            found = await self._split.read_elsewhere(found)
        return found

    async def _find(self, slot: UserSlot) -> tuple[SessionKey, bytes, SessionData] | None:
        """Follow `slot`'s pointer (find.lua); a stale pointer costs a compare-and-delete trip."""
        call = scripts.find_call(self.keys, slot)
        found = replies.pointed(await self._follow(self._scripts.FIND, call))
        if found is None:
            return None
        key, raw = found
        data = self._visible(slot, key, raw)
        if data is not None:
            assert raw is not None  # visible data came from a blob
            return key, raw, data
        # Missing or foreign blob: drop the pointer, but only if nobody re-pointed it meanwhile.
        keys, args = scripts.clear_pointer_call(call[0][0], key)
        clear = self._caller.eval(self._scripts.CLEAR_POINTER, keys, args, write=True, key=key)
        if not self.keys.cluster:
            await clear
        else:
            # A slot stuck mid-migration must not fail a read: the next lookup clears it.
            try:
                await clear
            except UnavailableError:
                return None
        _log.info("cleared a user pointer that named a missing or foreign session")
        return None

    async def find_or_create(
        self, ctx: TenantCtx, user: str, build: SessionBuilder
    ) -> tuple[SessionEntry, bool]:
        self._check_open()
        slot = own_slot(ctx, user)
        found = replies.pointed(
            await self._follow(self._scripts.FIND, scripts.find_call(self.keys, slot))
        )
        seen, foreign = "", False
        if found is not None:
            key, raw = found
            data = self._visible(slot, key, raw)
            if data is not None:
                assert raw is not None  # visible data came from a blob
                return SessionEntry(key, data, revision_of(raw)), False
            # (A key in another cluster slot cannot be re-checked by the create step: replaceable.)
            seen, foreign = key, raw is not None or self.keys.local_only(key)
        data = await resolve(build())
        blob = self._encode(data)
        check_find_or_create(ctx, slot, data)
        key = self.keys.mint(slot)
        if self._sealer is not None:
            blob = self._seal(key, blob, scope_of(data.tenant_ctx))
        userless = data.tenant_ctx.normalized_user is None
        for _ in range(_CREATE_ATTEMPTS):
            call = scripts.create_for_user_call(
                self.keys,
                slot,
                key,
                blob,
                self._ttl_args,
                seen=seen,
                foreign=foreign,
                userless=userless,
            )
            call = (call[0], call[1] + self._tail)
            other = replies.created_for_user(
                await self._follow(self._scripts.CREATE_FOR_USER, call)
            )
            if other is None:
                return SessionEntry(key, data, revision_of(blob)), True
            other_key, raw = other
            found_data = self._visible(slot, other_key, raw)
            if found_data is not None:  # another call created it meanwhile
                assert raw is not None  # visible data came from a blob
                return SessionEntry(other_key, found_data, revision_of(raw)), False
            seen, foreign = other_key, True
        raise ConflictError("the user's session slot kept changing; nothing was created")

    # -- reply-scope waits (Rust's keys and values; one script, one round trip each) -------------

    async def register_wait(
        self,
        ctx: TenantCtx,
        user_id: str,
        scope: ReplyScope,
        session_key: str,
        data: SessionData,
        *,
        ttl: float | None = None,
        due_in: float | None = None,
    ) -> None:
        self._check_open()
        key = check_key(session_key)
        scope_hash = scope_hash_of(scope)
        blob = self._encode(data)  # first: the fence reads fields this checks
        owner, slot = check_register_wait(ctx, user_id, data)
        if self._sealer is not None:
            blob = self._seal(key, blob, owner)
        if self.keys.cluster and not key.startswith(self.keys.tag(slot)):
            raise InvalidInputError(
                "on a Redis Cluster a wait's session key must carry its user's hash tag, so that "
                "the wait's keys share one slot: build it with session_key_for(ctx, user_id, key)"
            )
        wait_ttl_ms = wait_ttl_millis(ttl, self._expiry.idle_ttl)
        deadline = self._due.deadline(due_millis(due_in, wait_ttl_ms), scope)
        keys, args = scripts.register_wait_call(
            self.keys,
            key,
            owner,
            blob,
            slot,
            scope_hash=scope_hash,
            wait_ttl_ms=wait_ttl_ms,
            lifetime_ms=self._ttl_args[1],
            deadline=deadline,
        )
        if self._sealer is not None:
            args += self._owner_write(owner).tail
        script = self._scripts.REGISTER_WAIT
        step = self._caller.eval(script, keys, args, write=True, key=key)
        if deadline is not None and self.keys.cluster:
            step = self._due.indexed_after(step, key, deadline[1])
        reply = await step
        if reply in _EXPLAINED:
            await self._explain_refusal(key, data)
        replies.registered(reply, key, data)

    async def find_wait_by_scope(
        self, ctx: TenantCtx, user_id: str, scope: ReplyScope
    ) -> SessionKey | None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        keys, args = scripts.find_wait_call(self.keys, slot, scope_hash_of(scope))
        if self._sealer is not None:
            args += scripts.wait_tail(self._sealer, self.keys, slot)
        return replies.found_wait(await self._caller.eval(self._scripts.FIND_WAIT, keys, args))

    async def list_waits_for_user(self, ctx: TenantCtx, user_id: str) -> list[SessionKey]:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        keys, args = scripts.list_waits_call(self.keys, slot)
        if self._sealer is not None:
            args += scripts.wait_tail(self._sealer, self.keys, slot)
        return replies.listed_waits(await self._caller.eval(self._scripts.LIST_WAITS, keys, args))

    async def clear_wait(self, ctx: TenantCtx, user_id: str, scope: ReplyScope) -> None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        keys, args = scripts.clear_wait_call(self.keys, slot, scope_hash_of(scope))
        if self._sealer is not None:
            args += scripts.wait_tail(self._sealer, self.keys, slot)
        script = self._scripts.CLEAR_WAIT
        replies.cleared_wait(await self._caller.eval(script, keys, args, write=True))

    # -- erasure (erase.py) ------------------------------------------------------------------------

    async def erase_user(self, ctx: TenantCtx, user_id: str) -> int:
        """See `SessionStore.erase_user`. Here it SCANs the namespace's session blobs (on a
        cluster, every master) and runs one script per blob: O(keys in the namespace)."""
        self._check_open()
        return await erase.erase_user(
            self._caller, self.keys, erase_slot(ctx, user_id), self._opener
        )

    # -- deadlines (due.py) ------------------------------------------------------------------------

    async def claim_due_waits(self, *, limit: int = 100, lease: float = 30.0) -> list[DueWait]:
        self._check_open()
        return await self._due.claim(*check_claim(limit, lease))

    async def settle_due(self, due: DueWait) -> bool:
        self._check_open()
        return await self._due.settle(check_due(due))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._caller.aclose()

    # -- connections ---------------------------------------------------------------------------

    def pool_stats(self) -> ConnectionStats:
        """This store's connections now: in use, idle, batched calls in flight, and per master
        on a cluster (see `caller.ConnectionStats`)."""
        return self._caller.pool_stats()

    @property
    def caller(self) -> Caller:
        """How this store's calls reach Redis (`caller.Caller`): the CLI runs its own scripts
        through it, and white-box tests look inside; not a stable API."""
        return self._caller

    # -- plumbing ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    def _encode(self, data: SessionData) -> bytes:
        """`data`'s JSON (the codec's), within `max_blob_bytes`: checked before it is sealed."""
        return encode_session_data(data, max_bytes=self._max_blob_bytes)

    def _owner_write(self, owner: Scope) -> _OwnerWrite:
        """A sealing store's write by `owner`, kept per owner: a runner writes the same few
        owners over and over."""
        kept = self._owner_writes
        write = kept.get(owner)
        if write is None:
            sealer = self._sealer
            assert sealer is not None
            slot = owner_slot(owner)
            suffix = "" if slot is None else self.keys.slot_suffix(slot)
            if len(kept) >= _KEPT_WRITES:
                kept.clear()
            tail = scripts.sealed_tail(sealer, ((owner, "owner", suffix),))
            write = kept[owner] = _OwnerWrite(suffix, tail, sealer.owner_digest(owner))
        return write

    def _seal(self, key: str, blob: bytes, owner: Scope) -> bytes:
        """The sealed form of `blob` stored at `key` (a sealing store only)."""
        assert self._sealer is not None
        digest = self._owner_write(owner).digest
        return self._sealer.seal(blob, session_key=key, owner_digest=digest)

    async def _explain_refusal(self, key: str, data: SessionData) -> None:
        """A write script refused the blob at `key` as another owner's sealed blob or as one it
        cannot read: read it (one more round trip, on this error path only) to say why as
        plaintext would. A sealed owner that differs gets the fence's own rule; a sealed blob
        met by a store without options, what to do. Returns when there is nothing better to
        say (the caller raises the script's refusal)."""
        raw = await self._caller.execute("GET", self.keys.session(key), key=key)
        if not isinstance(raw, bytes) or raw[:1] != _SEALED_MAGIC:
            return
        if self._sealer is None:
            raise replies.corrupt(
                key,
                "the stored blob is sealed (encrypted or compressed) and this store has neither "
                "option: build it with the options the namespace is sealed with, or reseal the "
                "namespace to plaintext (greentic-session reseal)",
            )
        with contextlib.suppress(InternalError):
            check_update(scope_of(self._decode(key, raw).tenant_ctx), data)

    def _visible(self, slot: UserSlot, key: str, raw: bytes | None) -> SessionData | None:
        """The data of a blob found through `slot`'s pointer if the slot may see it, else None
        (missing or foreign)."""
        if raw is None:
            return None
        data = self._decode(key, raw)
        return data if visible_to(slot, scope_of(data.tenant_ctx)) else None

    def _decode(self, key: str, raw: bytes) -> SessionData:
        plain = self._opener.open(raw, session_key=key, limit=self._max_blob_bytes)
        try:
            return decode_session_data(plain)
        except InvalidInputError as exc:
            _log.warning("met a stored session that does not decode (raised InternalError)")
            raise replies.corrupt(key, exc.message) from None
