"""Durable deadlines on Redis (see `greentic_session.deadlines` for the contract).

Layout (lua/due_record.lua has the fields): a wait registered with `due_in` gets a record
`{ns}:due:{key}` in its own slot and a member `{reg}:{key}` in the deadline index, a ZSET scored
by when the member next needs a claimer: its deadline, then the end of each lease. `reg` is a
fresh token per registration, so a member names one registration: a member whose record is gone
or holds another `reg` is stale, and whoever meets it prunes it. The record is the truth (the
lease, the attempt count); the index only says where to look. All times are the server's.

Single node: one index, `{ns}:dueidx`. register_wait.lua writes record and member in its one
step; claim_due.lua claims in one step (judging each member against its record and its wait:
the scope pointer must still name the key, the blob must exist and belong to the scope's user);
settle_due.lua checks the lease and deletes record and member; clear_wait.lua and remove.lua
delete both.

Cluster: the wait's keys live in its user's slot, and an index there could not be searched, so
the index is sharded over `SHARDS` keys `{ns}:dueidx:{tag}` whose tags hash to slots spread
evenly over the slot space (`SHARD_TAGS`), hence over the masters; a key's shard is the CRC-32
of the key modulo `SHARDS`. register_wait writes the record in its one atomic step, then adds
the member to its shard in a second, ordered step (run to the end even if the caller is
cancelled); if that step fails the call raises `UnknownOutcomeError` (the wait is registered,
its deadline may be unindexed: register again). A claim visits the shards fairly (each gets an
equal share of `limit`, starting from a shard that rotates per call, more rounds while shards
had more): claim_index.lua leases the due members in the shard's index, then claim_record.lua
claims each at its record, by the record's node's clock; members met dead are removed and
members met early rescored, best effort (a member left behind is met again when its index lease
ends). settle removes the record, then the member (best effort: a member left behind is pruned
when met). clear_wait and remove delete the record; their member is pruned when met.

A claim that fails or is cancelled part way leaves its leases to run out, in the index and in
the records: no wait stays leased, and a wait it leased but never returned comes back with the
next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from typing import Any, TypeVar

import msgspec

from ...deadlines import DueWait
from ...errors import InternalError, SessionError, UnknownOutcomeError
from ...fence import FOREIGN, UserSlot, scope_of, wait_verdict
from ...schema import ReplyScope, SessionKey
from ...store import SessionEntry
from .caller import Caller
from .keys import RedisKeys, is_tagged
from .scripts import Arg, Call, Script, load_script
from .split import in_order

__all__ = [
    "SHARDS",
    "SHARD_TAGS",
    "ClaimDueReply",
    "ClaimIndexReply",
    "ClaimRecordReply",
    "RedisDue",
    "SettleDueReply",
    "claim_due_call",
    "claim_index_call",
    "claim_record_call",
    "settle_due_call",
    "shard_of",
]

T = TypeVar("T")

_log = logging.getLogger("greentic_session.redis")

# The cluster index's shards: tag i hashes to a slot in the i-th sixteenth of the slot space
# (the smallest `{d<i>.<n>}` that does; tests/test_redis_due.py recomputes them), so shards
# spread over masters that hold contiguous slot ranges, as the cluster's own allocation does.
SHARDS = 16
SHARD_TAGS = (
    *("{d0.12}", "{d1.11}", "{d2.2}", "{d3.1}", "{d4.62}", "{d5.61}", "{d6.42}", "{d7.41}"),
    *("{d8.21}", "{d9.22}", "{d10.23}", "{d11.20}", "{d12.0}", "{d13.3}", "{d14.40}", "{d15.43}"),
)
# At most this many rounds of a cluster claim (each round asks up to `limit` shards at once).
_ROUNDS = 2 * SHARDS

_SHARED = ("get.lua", "owner.lua", "wait_keys.lua", "waits.lua", "due_record.lua")


def _load(name: str) -> tuple[Script, Script]:
    """(single-node, cluster) builds of a deadline script."""
    return load_script(*_SHARED, name, cluster=False), load_script(*_SHARED, name, cluster=True)


_CLAIM_DUE = _load("claim_due.lua")
_CLAIM_INDEX = _load("claim_index.lua")
_CLAIM_RECORD = _load("claim_record.lua")
_SETTLE_DUE = _load("settle_due.lua")

_scope_encoder = msgspec.json.Encoder()
_scope_decoder = msgspec.json.Decoder(ReplyScope)


# -- each script's reply codes (as its header in lua/ states them) and argument builder -----------


class ClaimDueReply(IntEnum):
    """claim_due.lua; otherwise the claimed waits, each {session key, blob, scope JSON, due ms,
    attempt, lease id, user}."""

    INDEX_WRONG_TYPE = -3


class ClaimIndexReply(IntEnum):
    """claim_index.lua; otherwise the index members it leased."""

    INDEX_WRONG_TYPE = -3


class ClaimRecordReply(IntEnum):
    """claim_record.lua; otherwise the claimed wait (as claim_due.lua's), or the time (ms, above
    0) to score its member at."""

    STALE = 0


class SettleDueReply(IntEnum):
    """settle_due.lua; otherwise {1 or 0 (the wait still stands), index member}."""

    NOT_CURRENT = 0


def claim_due_call(keys: RedisKeys, limit: int, lease_ms: int, lease_prefix: str) -> Call:
    """claim_due.lua: up to `limit` due waits, leased for `lease_ms`, lease ids led by
    `lease_prefix`."""
    return (keys.due_index(),), (
        *(limit, lease_ms, lease_prefix),
        *(keys.due_prefix, keys.session_prefix, keys.wait_scope_prefix),
    )


def claim_index_call(shard: str, limit: int, lease_ms: int) -> Call:
    """claim_index.lua: up to `limit` due members of the index shard `shard`."""
    return (shard,), (limit, lease_ms)


def claim_record_call(
    keys: RedisKeys, key: str, member: bytes, lease_ms: int, lease_id: str
) -> Call:
    """claim_record.lua: claim the index member `member` (of session `key`) at its record."""
    return (keys.due(key),), (
        *(member, lease_ms, lease_id),
        *(keys.due_prefix, keys.session_prefix, keys.wait_scope_prefix),
    )


def settle_due_call(keys: RedisKeys, key: str, lease_id: str) -> Call:
    """settle_due.lua: end the deadline of `key` if `lease_id` is its current lease."""
    index: tuple[str, ...] = () if keys.cluster else (keys.due_index(),)
    args: tuple[Arg, ...] = (lease_id, key, keys.session_prefix, keys.wait_scope_prefix)
    return (keys.due(key), *index), args


def shard_of(key: str) -> int:
    """The index shard of the wait at `key` on a cluster."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % SHARDS


class RedisDue:
    """One store's deadline calls; `entry_of` reads a claimed blob as the store's get_entry, and
    `lacks_key` tells one sealed under a key the store's ring lacks (`Sealer.lacks_key`)."""

    def __init__(
        self,
        keys: RedisKeys,
        caller: Caller,
        entry_of: Callable[[str, bytes], SessionEntry],
        lacks_key: Callable[[bytes], bool],
    ) -> None:
        self._keys = keys
        self._redis = caller
        self._entry_of = entry_of
        self._lacks_key = lacks_key
        self.cluster = keys.cluster
        layout = 1 if self.cluster else 0
        self._claim_due = _CLAIM_DUE[layout]
        self._claim_index = _CLAIM_INDEX[layout]
        self._claim_record = _CLAIM_RECORD[layout]
        self._settle = _SETTLE_DUE[layout]
        self._shards = tuple(keys.due_index(tag) for tag in SHARD_TAGS)
        self._next_shard = 0

    # -- registering -------------------------------------------------------------------------------

    @staticmethod
    def deadline(due_ms: int | None, scope: ReplyScope) -> tuple[int, str, bytes] | None:
        """register_wait.lua's deadline (scripts.register_wait_call): ms from now, a fresh
        registration token, the scope as JSON; None for no deadline."""
        if due_ms is None:
            return None
        return due_ms, secrets.token_hex(8), _scope_encoder.encode(scope)

    def indexed_after(self, step: Awaitable[T], key: str, reg: str) -> Coroutine[Any, Any, T]:
        """A cluster register_wait's script step, then the deadline's index member in its
        shard, run to the end even if the caller is cancelled (split.py's ordering)."""
        return in_order(step, functools.partial(self._index_member, key, reg))

    async def _index_member(self, key: str, reg: str, registered: object) -> None:
        """The second step: the member of the deadline register_wait.lua just wrote
        (`registered`, its reply: the deadline in ms) joins its shard. A failure here leaves the
        wait registered and its deadline perhaps unindexed: an unknown outcome."""
        if isinstance(registered, bool) or not isinstance(registered, int) or registered <= 1:
            return
        failure: SessionError | None = None
        try:
            await self._redis.execute(
                "ZADD", self._shards[shard_of(key)], registered, f"{reg}:{key}", write=True
            )
        except SessionError as exc:
            failure = exc
        if failure is not None:
            raise UnknownOutcomeError(
                f"the wait {key!r} was registered, but indexing its deadline in another cluster "
                f"slot failed ({failure.code.value}); register it again"
            )

    # -- claims ----------------------------------------------------------------------------------

    async def claim(self, limit: int, lease_ms: int) -> list[DueWait]:
        token = secrets.token_hex(8)
        if not self.cluster:
            keys, args = claim_due_call(self._keys, limit, lease_ms, token)
            reply = await self._redis.eval(self._claim_due, keys, args, write=True)
            if reply == ClaimDueReply.INDEX_WRONG_TYPE:
                raise InternalError("the deadline index holds a value of another Redis type")
            return await self._delivered(reply)
        return await self._delivered(await self._claim_shards(limit, lease_ms, token))

    async def _claim_shards(self, limit: int, lease_ms: int, token: str) -> list[Any]:
        """A cluster claim: rounds over the shards in turn, each round sharing what is left of
        `limit` equally among the shards whose turn it is (at most `limit` of them); a shard that
        gave its whole share may hold more and queues for another turn, one that gave less is
        done. The first shard rotates per call, so no shard is always first."""
        start = self._next_shard
        self._next_shard = (start + 1) % SHARDS
        queue = [self._shards[(start + i) % SHARDS] for i in range(SHARDS)]
        claimed: list[Any] = []
        failures: list[SessionError] = []
        for round_ in range(_ROUNDS):
            left = limit - len(claimed)
            if left <= 0 or not queue:
                break
            turn, queue = queue[:left], queue[left:]
            share, extra = divmod(left, len(turn))
            asked = [(shard, share + (1 if i < extra else 0)) for i, shard in enumerate(turn)]
            results = await asyncio.gather(
                *(
                    # Lease ids: the claim's token, the round, the shard's place, the member's.
                    self._claim_shard(shard, quota, lease_ms, f"{token}.{round_}.{place}")
                    for place, (shard, quota) in enumerate(asked)
                ),
                return_exceptions=True,
            )
            for (shard, quota), result in zip(asked, results, strict=True):
                if isinstance(result, SessionError):
                    failures.append(result)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    got, met = result
                    claimed += got
                    if met == quota:  # the shard may hold more: another turn
                        queue.append(shard)
        if failures and not claimed:
            raise failures[0]
        return claimed

    async def _claim_shard(
        self, shard: str, quota: int, lease_ms: int, lease_base: str
    ) -> tuple[list[Any], int]:
        """One shard's share: its due members (leased in the index), each then claimed at its
        record; returns the claimed replies and how many members the shard gave."""
        keys, args = claim_index_call(shard, quota, lease_ms)
        members = await self._redis.eval(self._claim_index, keys, args, write=True)
        if members == ClaimIndexReply.INDEX_WRONG_TYPE:
            raise InternalError("a deadline index shard holds a value of another Redis type")
        names = [_member_key(member) for member in members]
        tries = [
            self._claim_at(name, member, lease_ms, f"{lease_base}.{i}")
            for i, (name, member) in enumerate(zip(names, members, strict=True))
            if name is not None
        ]
        replies = await asyncio.gather(*tries, return_exceptions=True)
        claimed, dead, later = [], [], []
        live = [member for name, member in zip(names, members, strict=True) if name is not None]
        dead += [member for name, member in zip(names, members, strict=True) if name is None]
        for member, reply in zip(live, replies, strict=True):
            if isinstance(reply, list):
                claimed.append(reply)
            elif reply == ClaimRecordReply.STALE:
                dead.append(member)
            elif isinstance(reply, int) and not isinstance(reply, bool):
                later += [reply, member]
            elif isinstance(reply, BaseException) and not isinstance(reply, SessionError):
                raise reply
            # A failed record step: its index lease runs out and the member is met again.
        await self._tidy(shard, dead, later)
        return claimed, len(members)

    async def _claim_at(self, key: str, member: bytes, lease_ms: int, lease_id: str) -> Any:
        keys, args = claim_record_call(self._keys, key, member, lease_ms, lease_id)
        return await self._redis.eval(self._claim_record, keys, args, write=True, key=key)

    async def _tidy(self, shard: str, dead: list[bytes], later: list[Any]) -> None:
        """Remove dead members and rescore early ones in `shard`, best effort: a member this
        misses is met again when its index lease ends."""
        try:
            if dead:
                await self._redis.execute("ZREM", shard, *dead, write=True)
            if later:
                await self._redis.execute("ZADD", shard, "XX", *later, write=True)
        except SessionError:
            _log.info("could not tidy a deadline index shard; its claim leases will run out")

    async def _delivered(self, replies: list[Any]) -> list[DueWait]:
        """The claimed waits of a claim's replies; a wait whose blob or scope does not decode,
        or whose sealed blob another owner holds, is settled (its deadline dropped) and left
        out."""
        waits: list[DueWait] = []
        for reply in replies:
            due = self._due_wait(reply)
            if isinstance(due, DueWait):
                waits.append(due)
            elif due is not None:
                key, lease_id, why = due
                _log.warning("dropped a deadline %s", why)
                with contextlib.suppress(SessionError):  # else its lease runs out: met again
                    await self._settle_lease(key, lease_id)
        return waits

    def _due_wait(self, reply: Any) -> DueWait | tuple[str, str, str] | None:
        """A claimed wait; (key, lease id, why) for one to drop; None to leave alone."""
        try:
            raw_key, blob, json, due_ms, attempt, raw_lease, raw_user, *judge = reply
            key, lease_id, user = raw_key.decode(), raw_lease.decode(), raw_user.decode()
            # A sealed blob comes with its wait's env, tenant_id and team ('' none): its owner,
            # hidden from the script, is judged here once it is opened (due_record.lua).
            slot = None
            if judge:
                env, tenant_id, team = (part.decode() for part in judge[0])
                slot = UserSlot(env, tenant_id, team or None, user)
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            return None  # not a reply our scripts give
        try:
            entry = self._entry_of(key, blob)
            scope = _scope_decoder.decode(json)
        except (SessionError, msgspec.MsgspecError, ValueError):
            if self._lacks_key(blob):
                # Not corrupt: sealed under a key another process's ring may hold (a rotation
                # under way). Left leased, it comes back when the lease ends, never dropped.
                _log.warning("claimed a wait sealed under a key this store lacks; left leased")
                return None
            return key, lease_id, "whose session or scope does not decode"
        if slot is not None and wait_verdict(slot, scope_of(entry.data.tenant_ctx)) == FOREIGN:
            return key, lease_id, "whose sealed session another owner holds"
        return DueWait(SessionKey(key), user, scope, entry, due_ms / 1000, attempt, lease_id)

    # -- settle ----------------------------------------------------------------------------------

    async def settle(self, due: DueWait) -> bool:
        if self.cluster and not is_tagged(due.key):
            return False  # no claim on a cluster returns such a key
        return await self._settle_lease(due.key, due.lease_id)

    async def _settle_lease(self, key: str, lease_id: str) -> bool:
        keys, args = settle_due_call(self._keys, key, lease_id)
        reply = await self._redis.eval(self._settle, keys, args, write=True, key=key)
        if not isinstance(reply, list):  # SettleDueReply.NOT_CURRENT
            return False
        standing, member = reply
        if self.cluster:
            with contextlib.suppress(SessionError):  # else it is pruned when a claim meets it
                await self._redis.execute("ZREM", self._shards[shard_of(key)], member, write=True)
        return bool(standing == 1)


def _member_key(member: object) -> str | None:
    """The session key an index member names, if it is one our layout writes on a cluster (a
    tagged key after `{reg}:`): anything else is removed unread."""
    if not isinstance(member, bytes):
        return None
    reg, sep, key = member.partition(b":")
    if not sep or not reg:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    return text if is_tagged(text) else None
