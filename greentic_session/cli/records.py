"""The export/import record: one JSON object per line, one line per session (format v1).

    {"key": "<session key>",
     "pttl": <remaining milliseconds> | null,          # null: the blob has no expiry
     "data": {<the blob, embedded byte for byte>},
     "meta": {"value": "<pointer suffix>", "pttl": <ms> | null} | null,
     "wait_hint": {"value": "<ttl ms>:<scope suffix>", "pttl": <ms> | null} | null,
     "refs": [{"key": "<name under the namespace>", "pttl": <ms> | null}, ...]}

`refs` are the keys that name the session: user pointers (`user:{env}:{tenant}:{team|-}:{user}`),
wait scopes (`waits:scope:...:{scope_hash}`, a string holding the key) and wait sets
(`waits:user:...`, a set the key is a member of). Names are relative to the namespace, so a file
can be imported under another `--namespace`. Unknown fields are refused, so an older importer
never drops what a newer exporter wrote.
"""

from __future__ import annotations

import msgspec

from ..codec import decode_session_data
from ..errors import InvalidInputError
from ..fence import check_key
from ..schema import SessionData
from .layout import REFERENCE_KINDS, Layout, Parsed, parse_slot

__all__ = ["MetaRecord", "RefRecord", "SessionRecord", "embed_blob", "validate_record"]


class MetaRecord(msgspec.Struct, forbid_unknown_fields=True):
    value: str
    pttl: int | None = None


class RefRecord(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    pttl: int | None = None


class SessionRecord(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: str
    pttl: int | None = None
    data: msgspec.Raw
    meta: MetaRecord | None = None
    wait_hint: MetaRecord | None = None  # a wait session's `{ns}:waitof:{key}`
    refs: list[RefRecord] = msgspec.field(default_factory=list)


encode_record = msgspec.json.Encoder().encode
decode_record = msgspec.json.Decoder(SessionRecord).decode


def embed_blob(blob: bytes) -> msgspec.Raw:
    """The blob as the record's `data`, byte for byte.

    A JSON Lines record must stay on one line; JSON strings cannot hold a raw line break, so a
    blob containing one has it as whitespace between tokens, and only such a blob is compacted.
    """
    if b"\n" in blob or b"\r" in blob:
        return msgspec.Raw(msgspec.json.encode(msgspec.json.decode(blob)))
    return msgspec.Raw(blob)


def _check_pttl(pttl: int | None, what: str) -> None:
    if pttl is not None and pttl <= 0:
        raise InvalidInputError(f"{what} must be a positive number of milliseconds or null")


def validate_record(record: SessionRecord, layout: Layout) -> list[Parsed]:
    """Check `record` as the stores would check a write; return its refs, parsed.

    A ref must be a pointer or wait key of the session owner's env, tenant and team (its user
    may differ: a user-less session is pointed to from its creator's user).
    """
    check_key(record.key)
    _check_pttl(record.pttl, "pttl")
    data: SessionData = decode_session_data(bytes(record.data))
    if record.meta is not None:
        _check_pttl(record.meta.pttl, "meta.pttl")
        if record.meta.value and parse_slot(record.meta.value) is None:
            raise InvalidInputError("meta.value must be empty or a user-pointer suffix")
    if record.wait_hint is not None:
        _check_pttl(record.wait_hint.pttl, "wait_hint.pttl")
    ctx = data.tenant_ctx
    owner = (ctx.env, ctx.tenant_id, ctx.normalized_team)
    parsed_refs = []
    for index, ref in enumerate(record.refs):
        parsed = layout.parse(ref.key)
        if parsed.kind not in REFERENCE_KINDS or parsed.slot is None:
            raise InvalidInputError(f"refs[{index}].key is not a user pointer or wait key")
        if (parsed.slot.env, parsed.slot.tenant_id, parsed.slot.team) != owner:
            raise InvalidInputError(
                f"refs[{index}].key belongs to another env, tenant or team than the session"
            )
        _check_pttl(ref.pttl, f"refs[{index}].pttl")
        parsed_refs.append(parsed)
    return parsed_refs
