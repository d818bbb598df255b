"""The in-memory store's deadlines (see `deadlines`): a record per wait and one heap.

The heap holds (moment, serial, key) for every moment a record needs a claimer: its deadline,
then the end of each lease. An item is current only while its record still has that serial and
that moment; every other item is stale and skipped when popped, so registering, clearing and
leasing never search the heap (O(log n) each) and a claim pops only what is due (O(limit log n)
plus the stale items it meets, each popped once). The table is compacted when stale items
outnumber records. Not thread-safe by itself: the store calls it under its lock.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Callable
from typing import Generic, TypeVar

from ..schema import ReplyScope

__all__ = ["DueBook", "DueRecord"]

W = TypeVar("W")  # what identifies the wait a deadline belongs to (the store's own record)
E = TypeVar("E")  # what a still-valid wait gives a claim (the store's entry)


class DueRecord(Generic[W]):
    """One wait's deadline: when it is due, its lease, and how often it was handed out."""

    __slots__ = ("attempt", "due", "lease_id", "scope", "serial", "until", "user_id", "wait")

    def __init__(self, serial: int, wait: W, scope: ReplyScope, user_id: str, due: float) -> None:
        self.serial = serial
        self.wait = wait
        self.scope = scope
        self.user_id = user_id
        self.due = due
        self.attempt = 0
        self.lease_id: str | None = None
        self.until = due  # when it next needs a claimer: its deadline, then its lease's end


class DueBook(Generic[W]):
    """Every deadline of one store, keyed by session key."""

    def __init__(self) -> None:
        self._records: dict[str, DueRecord[W]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._serials = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._records)

    def set(self, key: str, wait: W, scope: ReplyScope, user_id: str, due: float) -> None:
        """Give `key`'s wait a new deadline (replacing any it had: a new serial, no lease)."""
        record = DueRecord(next(self._serials), wait, scope, user_id, due)
        self._records[key] = record
        heapq.heappush(self._heap, (due, record.serial, key))
        self._compact()

    def drop(self, key: str) -> None:
        """Forget `key`'s deadline, if it has one (its heap items go stale)."""
        self._records.pop(key, None)

    def claim(
        self,
        now: float,
        limit: int,
        lease: float,
        valid: Callable[[str, W], E | None],
    ) -> list[tuple[str, DueRecord[W], E]]:
        """Lease up to `limit` records due by `now` for `lease` seconds; `valid` says whether a
        record's wait still stands (its entry) or not (None: the record is dropped)."""
        heap, records = self._heap, self._records
        claimed: list[tuple[str, DueRecord[W], E]] = []
        token = secrets.token_hex(8)
        while heap and heap[0][0] <= now and len(claimed) < limit:
            moment, serial, key = heapq.heappop(heap)
            record = records.get(key)
            if record is None or record.serial != serial or record.until != moment:
                continue  # stale: the record was dropped, replaced or leased since
            entry = valid(key, record.wait)  # may drop expired waits' records itself
            if entry is None:
                records.pop(key, None)
                continue
            record.attempt += 1
            record.lease_id = f"{token}.{len(claimed)}"
            record.until = now + lease
            heapq.heappush(heap, (record.until, serial, key))
            claimed.append((key, record, entry))
        return claimed

    def settle(self, key: str, lease_id: str) -> DueRecord[W] | None:
        """Remove `key`'s record if `lease_id` is its current lease; the record, else None."""
        record = self._records.get(key)
        if record is None or record.lease_id != lease_id:
            return None
        del self._records[key]
        return record

    def _compact(self) -> None:
        """Drop stale heap items once they outnumber the records (amortized O(1) per push)."""
        if len(self._heap) > 2 * len(self._records) + 64:
            records = self._records
            self._heap = [
                item
                for item in self._heap
                if (record := records.get(item[2])) is not None
                and record.serial == item[1]
                and record.until == item[0]
            ]
            heapq.heapify(self._heap)
