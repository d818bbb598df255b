"""The walk `stats` and `check` share: a `Census` of every key of the namespace, counted for
`stats`, with the problems `check` reports (corrupt blobs, blobs that do not open with the
run's keys, wrong-type keys, orphan references, confirmed missing just before they are
reported), and how the blobs are sealed (from their headers: no key needed)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from ..errors import InternalError
from ..fence import UserSlot
from ..schema import SessionData
from ..sealing import read_header
from .context import Context, Opened, chunks, team_label
from .layout import COMPANION_KINDS, Kind
from .walk import Entry, Walker

__all__ = ["SIZE_BUCKETS", "TTL_BUCKETS", "Census", "sealed_form", "take_census"]


# Histogram buckets: (upper bound, label).
SIZE_BUCKETS = [
    (256, "<256B"),
    (1024, "<1KiB"),
    (4096, "<4KiB"),
    (16384, "<16KiB"),
    (65536, "<64KiB"),
    (262144, "<256KiB"),
    (1 << 20, "<1MiB"),
]
TTL_BUCKETS = [
    (60_000, "<1m"),
    (600_000, "<10m"),
    (3_600_000, "<1h"),
    (86_400_000, "<1d"),
    (604_800_000, "<7d"),
]


def _bucket(value: int, buckets: list[tuple[int, str]], top: str) -> str:
    for bound, label in buckets:
        if value < bound:
            return label
    return top


def _owner(data: SessionData) -> tuple[str, str, str]:
    ctx = data.tenant_ctx
    return (ctx.env, ctx.tenant_id, team_label(ctx.normalized_team))


def _slot_owner(slot: UserSlot) -> tuple[str, str, str]:
    return (slot.env, slot.tenant_id, team_label(slot.team))


def sealed_form(key: str, raw: bytes) -> tuple[str, bool, bool] | None:
    """How a blob is stored, from its header: (key id, "" when not encrypted; compressed;
    encrypted), ("", False, False) for plaintext JSON, None for a malformed sealed header."""
    header = None
    try:
        header = read_header(raw, session_key=key)
    except InternalError:
        return None
    if header is None:
        return ("", False, False)
    return (header.key_id, header.compressed, header.encrypted)


class Census:
    """What a walk saw: counts for `stats`, problems for `check`."""

    def __init__(self, opener: Callable[[str, bytes], Opened]) -> None:
        self.opener = opener
        # Per sealed form (sealed_form; None: malformed header): blobs and their stored bytes.
        self.forms: Counter[tuple[str, bool, bool] | None] = Counter()
        self.form_bytes: Counter[tuple[str, bool, bool] | None] = Counter()
        self.unopened: list[tuple[Entry, str]] = []
        self.kinds: Counter[str] = Counter()
        self.sessions: Counter[tuple[str, str, str]] = Counter()
        self.refs: Counter[tuple[str, str, str]] = Counter()
        self.sizes: Counter[str] = Counter()
        self.ttls: Counter[str] = Counter()
        self.session_keys: set[str] = set()
        self.naming: dict[str, list[tuple[Entry, str | None]]] = defaultdict(list)
        self.corrupt: list[tuple[Entry, str]] = []
        self.wrong_type: list[Entry] = []
        self.orphans: list[tuple[Entry, str, str | None]] = []  # entry, session key, member

    def add(self, entry: Entry) -> None:
        self.kinds[entry.kind] += 1
        if entry.wrong_type:
            self.wrong_type.append(entry)
            return
        key = entry.parsed.session_key
        if entry.kind is Kind.SESSION and key is not None and entry.value is not None:
            self.session_keys.add(key)
            self.sizes[_bucket(len(entry.value), SIZE_BUCKETS, ">=1MiB")] += 1
            self.ttls[
                "none" if entry.pttl is None else _bucket(entry.pttl, TTL_BUCKETS, ">=7d")
            ] += 1
            form = sealed_form(key, entry.value)
            self.forms[form] += 1
            self.form_bytes[form] += len(entry.value)
            opened = self.opener(key, entry.value)
            if opened.data is not None:
                self.sessions[_owner(opened.data)] += 1
            elif opened.sealed:
                self.unopened.append((entry, opened.problem or "does not open"))
            else:
                self.corrupt.append((entry, opened.problem or "undecodable"))
        elif entry.kind in COMPANION_KINDS and key is not None:
            self.naming[key].append((entry, None))
        elif entry.slot is not None:
            self.refs[_slot_owner(entry.slot)] += 1
            if entry.members is not None:
                for member in entry.members:
                    self.naming[member].append((entry, member))
            elif entry.value is not None:
                self.naming[entry.value.decode(errors="replace")].append((entry, None))

    async def find_orphans(self, ctx: Context, targets: Iterable[str] | None = None) -> None:
        """Confirm, with EXISTS now, that the sessions the candidates name are gone."""
        if targets is None:
            targets = [key for key in self.naming if key not in self.session_keys]
        for chunk in chunks(list(targets)):
            pipe = ctx.conn.client.pipeline(transaction=False)
            for key in chunk:
                pipe.exists(ctx.layout.full(ctx.layout.session_name(key)))
            found = await ctx.conn.call(pipe.execute)
            for key, exists in zip(chunk, found, strict=True):
                if not exists:
                    self.orphans.extend((e, key, m) for e, m in self.naming.get(key, ()))


async def take_census(ctx: Context, label: str) -> tuple[Census, Walker]:
    """Walk every key into a `Census`; the orphans are confirmed unless Ctrl-C cut the walk."""
    census = Census(ctx.open)
    walker = ctx.walker(label)
    async for batch in walker.batches():
        for entry in batch:
            census.add(entry)
    if not walker.interrupted:
        await census.find_orphans(ctx)
    return census, walker
