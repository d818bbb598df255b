"""The one codec for `SessionData`: the exact bytes Rust's `serde_json::to_string` writes, and
on read exactly the documents serde refuses are refused (see docs/wire.md for what remains).

The encoder and decoder are built once at import and shared by every backend. Dict keys are
sorted (`order="deterministic"`) as serde writes a `BTreeMap`; Struct fields keep declaration
order.

Reading has two paths. msgspec decodes (types, identifiers and integer ranges are checked by the
Structs), then the result is re-encoded: when that gives back the input bytes, which is the case
for everything this codec or serde writes, the document cannot hold what msgspec forgives and
serde does not (a repeated field: msgspec keeps the last, serde refuses; `-0` for a u32). Any
other spelling (whitespace, escapes, field order, unknown fields) takes a slow second parse that
looks for exactly those.
"""

from __future__ import annotations

import functools
import json
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from .errors import InvalidInputError
from .schema import INT_RANGES, OWNER_FIELDS, SessionData, TenantCtx, check_writable

__all__ = ["decode_session_data", "encode_session_data", "owner_prefix_length"]

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(SessionData)


def encode_session_data(data: SessionData, *, max_bytes: int | None = None) -> bytes:
    """Serialize `data` to the shared greentic-types JSON; a wrongly typed field or a string
    that is not valid Unicode raises `InvalidInputError` (see `check_writable`), and so does a
    result over `max_bytes` (see `limits`): one with more characters than that is refused
    before it is encoded, so a huge payload costs no encoding time."""
    chars = check_writable(data)
    if max_bytes is None:
        return _encoder.encode(data)
    if chars is not None:
        _check_size(chars, max_bytes)  # every character takes at least one byte
    blob = _encoder.encode(data)
    _check_size(len(blob), max_bytes)
    return blob


def _check_size(size: int, limit: int) -> None:
    """Refuse a session of `size` encoded bytes (or a lower bound of them) over `limit`."""
    if size > limit:
        raise InvalidInputError(
            f"the encoded session is over max_blob_bytes={limit} ({size} bytes or more); "
            "nothing was written"
        )


def decode_session_data(raw: bytes | str) -> SessionData:
    """Parse greentic-types JSON. Whatever serde_json would refuse for `SessionData` (and
    whatever cannot be read at all: bytes that are not UTF-8, nesting past the recursion limit)
    raises `InvalidInputError`, whose message names a field or position, never a value. It
    carries no exception chain: the parser's own exceptions can hold the input."""
    problem = _decode_problem(raw)
    if isinstance(problem, str):
        raise InvalidInputError(problem)
    return problem


def _decode_problem(raw: bytes | str) -> SessionData | str:
    """The decoded data, or why it cannot be read (raised by the caller, outside any except)."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            return "SessionData JSON is not valid Unicode"
    try:
        data = _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # includes ValidationError: wrong type, id, range
        return f"invalid SessionData JSON: {exc}"
    except UnicodeDecodeError:
        return "SessionData JSON is not valid UTF-8"
    except RecursionError:
        return "SessionData JSON is nested too deeply"
    if _encoder.encode(data) != raw:
        return _serde_refusal(raw) or data
    return data


class _JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers which keys it held more than once."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: frozenset[str] = frozenset()
        if len(self) != len(pairs):
            counts = Counter(k for k, _ in pairs)
            self.repeated = frozenset(k for k, n in counts.items() if n > 1)


_NEGATIVE_ZERO = -0.0  # how serde_json reads the integer text "-0": a float, refused by a u32
_pairs_decoder = json.JSONDecoder(
    object_pairs_hook=_JsonObject,
    # Numbers matter only as "is this -0": skip int/float conversion (and its digit limit).
    parse_int=lambda text: _NEGATIVE_ZERO if text == "-0" else 0,
    parse_float=lambda text: 0.0,
)


@dataclass(frozen=True)
class _StructRules:
    """What the slow path checks in one JSON object that holds a Struct, built from the schema."""

    fields: frozenset[str]  # JSON names; none may repeat
    unsigned: frozenset[str]  # int fields with no negative values: "-0" is refused
    nested: dict[str, _StructRules]  # Struct-typed fields (Optional or not)


def _rules_for(kind: msgspec.inspect.StructType) -> _StructRules:
    mi = msgspec.inspect
    unsigned: set[str] = set()
    nested: dict[str, _StructRules] = {}
    for field in kind.fields:
        ftype = field.type
        if isinstance(ftype, mi.UnionType):  # Optional[...]
            ftype = next(t for t in ftype.types if not isinstance(t, mi.NoneType))
        if isinstance(ftype, mi.StructType):
            nested[field.encode_name] = _rules_for(ftype)
        elif isinstance(ftype, mi.IntType) and INT_RANGES[field.name][0] == 0:
            unsigned.add(field.encode_name)
    names = frozenset(f.encode_name for f in kind.fields)
    return _StructRules(names, frozenset(unsigned), nested)


_SESSION_DATA_RULES = _rules_for(
    cast(msgspec.inspect.StructType, msgspec.inspect.type_info(SessionData))
)


def _serde_refusal(raw: bytes) -> str | None:
    """The slow path: why serde refuses `raw` though msgspec read it (a repeated field of a
    known Struct, at any depth, or `-0` for an unsigned integer field), else None."""
    # msgspec skips unknown fields without checking their UTF-8, which serde refuses, and this
    # parse may hit the recursion limit where msgspec did not: both are refusals.
    try:
        tree = _pairs_decoder.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "SessionData JSON is not valid UTF-8"
    except RecursionError:
        return "SessionData JSON is nested too deeply"
    except ValueError:  # pragma: no cover - msgspec read it, so json reads it too
        return "invalid SessionData JSON"
    return _object_refusal(tree, _SESSION_DATA_RULES, "data")


def _object_refusal(node: object, rules: _StructRules, what: str) -> str | None:
    if not isinstance(node, _JsonObject):  # pragma: no cover - msgspec accepted an object here
        return f"invalid SessionData JSON: {what} is not an object"
    repeated = node.repeated & rules.fields
    if repeated:
        return f"invalid SessionData JSON: {what} repeats {min(repeated)}"
    for name in rules.unsigned:
        if type(node.get(name)) is float:
            return f"invalid SessionData JSON: {what}.{name} is -0"
    for name, inner in rules.nested.items():
        value = node.get(name)
        if value is not None:
            refusal = _object_refusal(value, inner, f"{what}.{name}")
            if refusal is not None:
                return refusal
    return None


_BLOB_HEAD = b'{"tenant_ctx":'
_OWNER_TAIL = b'"attempt":0}'


def owner_prefix_length(ctx: TenantCtx) -> int:
    """How many leading bytes of a blob encoded with `ctx` hold its owner fields.

    The owner fields (env, tenant, tenant_id, team, team_id, user, user_id) lead the encoding,
    so a stored blob whose first bytes equal the new blob's, with no further team/user field
    after them, has the same owner. The Redis update script uses this to skip a JSON decode.
    Computed by encoding the owner fields alone, so the layout stays this codec's alone; cached
    per owner, since a runner updates the same few owners over and over.
    """
    return _owner_prefix_length(_owner_fields(ctx))


_owner_fields = operator.attrgetter(*OWNER_FIELDS)


@functools.lru_cache(maxsize=4096)
def _owner_prefix_length(values: tuple[str | None, ...]) -> int:
    owner = TenantCtx(**dict(zip(OWNER_FIELDS, values, strict=True)), attempt=0)  # type: ignore[arg-type]
    return len(_BLOB_HEAD) + len(_encoder.encode(owner)) - len(_OWNER_TAIL)
