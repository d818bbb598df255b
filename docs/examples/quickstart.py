"""Quickstart: pause a flow, find it again by its user, resume it, finish it.

Run with `nox -s quickstart` (in-memory) or `nox -s quickstart -- --redis-url redis://...`.
"""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from greentic_session import (
    SessionBackendConfig,
    SessionCursor,
    SessionData,
    TenantCtx,
    create_session_store,
)


async def walk_through(config: SessionBackendConfig) -> None:
    async with create_session_store(config) as store:
        print(f"store:   {store!r}")
        ctx = TenantCtx.new("dev", "tenant-42", user="user-7")
        paused = SessionData(
            tenant_ctx=ctx,
            flow_id="support.flow",
            cursor=SessionCursor(node_pointer="node.wait_input", wait_reason="await_reply"),
            context_json='{"ticket":123}',
        )

        key = await store.create_session(ctx, paused)
        print(f"create:  session {key} waits at {paused.cursor.node_pointer}")

        loaded = await store.get_session(key)
        assert loaded == paused
        print(f"get:     flow {loaded.flow_id}, state {loaded.context_json}")

        found = await store.find_by_user(ctx, "user-7")
        assert found is not None
        assert found[0] == key
        print(f"find:    the next message from user-7 resumes session {found[0]}")

        resumed = msgspec.structs.replace(
            paused,
            cursor=SessionCursor(node_pointer="node.confirm"),
            context_json='{"ticket":123,"reply":"yes"}',
        )
        await store.update_session(key, resumed)
        print(
            f"update:  now waiting at {resumed.cursor.node_pointer}, state {resumed.context_json}"
        )

        await store.remove_session(key)
        assert await store.get_session(key) is None
        assert await store.find_by_user(ctx, "user-7") is None
        print("remove:  flow finished; get and find_by_user now return None")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", help="run against Redis instead of the in-memory store")
    parser.add_argument("--namespace", default="greentic:quickstart")
    args = parser.parse_args()
    if args.redis_url:
        config = SessionBackendConfig.redis_url(args.redis_url, namespace=args.namespace)
    else:
        config = SessionBackendConfig.in_memory()
    asyncio.run(walk_through(config))


if __name__ == "__main__":
    main()
