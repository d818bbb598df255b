"""Case 4: the codec. Encode, decode and encode+decode of one `SessionData`, three ways:

- ours:     the project's codec (`encode_session_data` / `decode_session_data`, msgspec Structs
            that also validate identifiers on decode);
- stdlib:   `json` into `dataclasses` of the same shape (`asdict` + `json.dumps` to encode;
            `json.loads` + constructors to decode; no validation);
- pydantic: pydantic v2 `BaseModel`s of the same shape (`model_dump_json(exclude_defaults=True)`
            to encode, `model_validate_json` to decode; type validation only).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pydantic

from greentic_session import SessionData, decode_session_data, encode_session_data

from .harness import SyncContender, batched_sync_latency, latency_rows
from .payloads import Population
from .settings import Profile

__all__ = ["CODEC_OPS", "run_codec_size"]

CODEC_OPS: tuple[str, ...] = ("encode", "decode", "encode+decode")


# -- stdlib json + dataclasses -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class DCDeadline:
    unix_millis: int


@dataclasses.dataclass(slots=True)
class DCImpersonation:
    actor_id: str
    reason: str | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class DCTenantCtx:
    env: str
    tenant: str
    tenant_id: str
    team: str | None = None
    team_id: str | None = None
    user: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    flow_id: str | None = None
    node_id: str | None = None
    provider_id: str | None = None
    trace_id: str | None = None
    i18n_id: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    deadline: DCDeadline | None = None
    attempt: int
    idempotency_key: str | None = None
    impersonation: DCImpersonation | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class DCCursor:
    node_pointer: str
    wait_reason: str | None = None
    outbox_marker: str | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class DCSessionData:
    tenant_ctx: DCTenantCtx
    flow_id: str
    pack_id: str | None = None
    cursor: DCCursor
    context_json: str


def dc_encode(data: DCSessionData) -> str:
    return json.dumps(dataclasses.asdict(data), separators=(",", ":"))


def dc_decode(text: str | bytes) -> DCSessionData:
    raw = json.loads(text)
    ctx = dict(raw["tenant_ctx"])
    if ctx.get("deadline") is not None:
        ctx["deadline"] = DCDeadline(**ctx["deadline"])
    if ctx.get("impersonation") is not None:
        ctx["impersonation"] = DCImpersonation(**ctx["impersonation"])
    return DCSessionData(
        tenant_ctx=DCTenantCtx(**ctx),
        flow_id=raw["flow_id"],
        pack_id=raw.get("pack_id"),
        cursor=DCCursor(**raw["cursor"]),
        context_json=raw["context_json"],
    )


# -- pydantic v2 ------------------------------------------------------------------------------


class PDDeadline(pydantic.BaseModel):
    unix_millis: int


class PDImpersonation(pydantic.BaseModel):
    actor_id: str
    reason: str | None = None


class PDTenantCtx(pydantic.BaseModel):
    env: str
    tenant: str
    tenant_id: str
    team: str | None = None
    team_id: str | None = None
    user: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    flow_id: str | None = None
    node_id: str | None = None
    provider_id: str | None = None
    trace_id: str | None = None
    i18n_id: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, str] = pydantic.Field(default_factory=dict)
    deadline: PDDeadline | None = None
    attempt: int
    idempotency_key: str | None = None
    impersonation: PDImpersonation | None = None


class PDCursor(pydantic.BaseModel):
    node_pointer: str
    wait_reason: str | None = None
    outbox_marker: str | None = None


class PDSessionData(pydantic.BaseModel):
    tenant_ctx: PDTenantCtx
    flow_id: str
    pack_id: str | None = None
    cursor: PDCursor
    context_json: str


def pd_encode(data: PDSessionData) -> str:
    return data.model_dump_json(exclude_defaults=True)


def pd_decode(text: str | bytes) -> PDSessionData:
    return PDSessionData.model_validate_json(text)


# -- the case ---------------------------------------------------------------------------------


def _contenders(op: str, data: SessionData) -> list[SyncContender]:
    blob = encode_session_data(data)
    dc = dc_decode(blob)
    dc_text = dc_encode(dc)
    pd = pd_decode(blob)
    pd_text = pd_encode(pd)
    if decode_session_data(pd_text) != data or decode_session_data(blob) != data:
        raise AssertionError("codec contenders disagree on the data")
    ops: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]] = {
        "encode": (
            lambda: encode_session_data(data),
            lambda: dc_encode(dc),
            lambda: pd_encode(pd),
        ),
        "decode": (
            lambda: decode_session_data(blob),
            lambda: dc_decode(dc_text),
            lambda: pd_decode(pd_text),
        ),
        "encode+decode": (
            lambda: decode_session_data(encode_session_data(data)),
            lambda: dc_decode(dc_encode(dc)),
            lambda: pd_decode(pd_encode(pd)),
        ),
    }
    ours, stdlib, pyd = ops[op]
    return [
        SyncContender("ours (msgspec)", "ours", ours),
        SyncContender("stdlib json + dataclasses", "peer", stdlib),
        SyncContender("pydantic v2", "peer", pyd),
    ]


def run_codec_size(
    size: int, profile: Profile, *, tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """All three codec operations at one payload size; one row per (operation, contender)."""
    pop = Population(size, 1)
    data = pop.datas[0]
    rows: list[dict[str, Any]] = []
    for op in CODEC_OPS:
        contenders = _contenders(op, data)
        lat = batched_sync_latency(
            contenders,
            rounds=profile.rounds,
            batches=profile.codec_batches,
            batch=profile.codec_batch,
            seconds=profile.codec_seconds,
            warmup=50,
            tick=tick,
        )
        rows += latency_rows(
            "codec", op, size=size, blob_bytes=pop.blob_size, contenders=contenders, lat=lat
        )
    return rows
