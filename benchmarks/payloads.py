"""Benchmark inputs: `context_json` payloads of an exact byte size and the sessions that carry them.

Every implementation in a case gets the same payload: ours as `SessionData.context_json`, the
floors as the blob our codec writes, aiogram as the payload parsed into a dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from greentic_session import (
    SessionCursor,
    SessionData,
    TenantCtx,
    encode_session_data,
)

__all__ = ["HEADLINE_SIZE", "SIZES", "Population", "context_json", "size_label"]

SIZES: tuple[int, ...] = (256, 4096, 65536)
HEADLINE_SIZE = 4096

ENV = "dev"
TENANT = "tenant-1"
FLOW_ID = "support.flow"
NODE = "node.wait"


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def context_json(size: int) -> str:
    """A realistic JSON object (chat history plus variables), exactly `size` bytes of ASCII."""
    obj: dict[str, Any] = {
        "locale": "en-US",
        "step": 3,
        "vars": {"order_id": "A-1042", "retries": 1, "vip": False},
        "history": [],
        "pad": "",
    }
    history: list[dict[str, Any]] = obj["history"]
    turn = 0
    while True:
        history.append(
            {
                "role": "user" if turn % 2 == 0 else "bot",
                "ts": 1_700_000_000 + 37 * turn,
                "text": f"message {turn}: where is my order? it was due on tuesday",
            }
        )
        if len(_dumps(obj)) > size:
            history.pop()
            break
        turn += 1
    obj["pad"] = "x" * (size - len(_dumps(obj)))
    text = _dumps(obj)
    if len(text) != size:
        raise ValueError(f"cannot build a {size}-byte context_json (got {len(text)})")
    return text


@dataclass(frozen=True)
class Population:
    """`count` users of one tenant, each with one session of the same `size`-byte payload."""

    size: int
    count: int

    @cached_property
    def payload(self) -> str:
        return context_json(self.size)

    @cached_property
    def payload_dict(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed

    @cached_property
    def users(self) -> list[str]:
        return [f"user-{i}" for i in range(self.count)]

    @cached_property
    def ctxs(self) -> list[TenantCtx]:
        return [TenantCtx.new(ENV, TENANT, user=user) for user in self.users]

    @cached_property
    def datas(self) -> list[SessionData]:
        payload = self.payload
        return [
            SessionData(
                tenant_ctx=ctx,
                flow_id=FLOW_ID,
                cursor=SessionCursor(node_pointer=NODE),
                context_json=payload,
            )
            for ctx in self.ctxs
        ]

    @cached_property
    def blobs(self) -> list[bytes]:
        return [encode_session_data(data) for data in self.datas]

    @cached_property
    def blob_size(self) -> int:
        return len(encode_session_data(self.datas[0]))
