"""The example flow service (examples/flow_service.py) on uvicorn, driven over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from examples.flow_service import ENV, TENANT, Form, create_app, read_form, store_from_environment
from greentic_session import (
    InMemorySessionStore,
    SessionError,
    SessionStore,
    TenantCtx,
)
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.testing import LOOP_KINDS, Backend
from tests.conftest import BACKEND_PARAMS, backend_urls, drop_namespace

USERS = 12


@contextlib.asynccontextmanager
async def serving(open_store: Callable[[], SessionStore]) -> AsyncIterator[tuple[str, list[Any]]]:
    """The app on uvicorn, in this event loop, on a free loopback port; the stores it opened.

    The socket is bound and listening before uvicorn starts, so requests sent at once wait in the
    backlog until the lifespan has opened the store and the server accepts them.
    """
    opened: list[SessionStore] = []

    def open_and_keep() -> SessionStore:
        store = open_store()
        opened.append(store)
        return store

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(open_and_keep),
        lifespan="on",
        ws="none",
        http="h11",
        log_config=None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}", opened
    finally:
        server.should_exit = True
        await task
        sock.close()


async def converse(client: httpx.AsyncClient, user: str, texts: list[str]) -> list[dict[str, str]]:
    """Send `texts` as `user`, one after the other; the JSON replies."""
    replies = []
    for text in texts:
        response = await client.post("/message", json={"user": user, "text": text})
        assert response.status_code == 200, response.text
        replies.append(response.json())
    return replies


def _opener(backend: Backend, request: pytest.FixtureRequest) -> Callable[[], SessionStore]:
    if not backend.needs_redis:
        return lambda: backend.open(namespace="unused")
    url, _ = backend_urls(request, backend)
    namespace = request.getfixturevalue("namespace")
    return lambda: backend.open(redis_url=url, namespace=namespace)


@pytest.mark.loops(*LOOP_KINDS)  # Starlette and httpx run on asyncio loops, not trio
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_concurrent_users_each_advance_their_own_form(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """Concurrent users over HTTP each get their own form's replies in order, the store holds
    each one's finished form, and shutdown closes the store."""
    users = [f"user-{n}" for n in range(USERS)]

    def script(user: str) -> list[str]:
        return ["hi", f"Name {user}", "not-an-email", f"{user}@example.org", f"issue of {user}"]

    async with (
        serving(_opener(backend, request)) as (url, opened),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        conversations = await asyncio.gather(*(converse(client, u, script(u)) for u in users))
        (store,) = opened
        stored = {}
        for user in users:
            found = await store.find_by_user(TenantCtx.new(ENV, TENANT, user=user), user)
            assert found is not None
            stored[user] = found[1]
        restart = await converse(client, users[0], ["again"])

    for user, replies in zip(users, conversations, strict=True):
        assert [r["step"] for r in replies] == ["name", "email", "email", "issue", "done"]
        assert replies[0]["reply"] == "Hello! What is your name?"
        assert replies[1]["reply"] == f"Thanks, Name {user}. What is your email?"
        assert replies[2]["reply"].startswith("That does not look like an email")
        assert replies[4]["reply"] == (
            f"Ticket 1 filed for Name {user} <{user}@example.org>: issue of {user}"
        )
        assert stored[user].cursor.node_pointer == "form.done"
        assert read_form(stored[user]).tickets == 1
    assert restart == [{"reply": "Hello! What is your name?", "step": "name"}]
    with pytest.raises(SessionError):  # the lifespan closed it on shutdown
        await store.get_session("any")
    _, raw_url = backend_urls(request, backend)
    if raw_url is not None:
        await drop_namespace(raw_url, request.getfixturevalue("namespace"))


@pytest.mark.loops(*LOOP_KINDS)
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_concurrent_messages_of_one_user_all_count(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """Eight messages one user sends at once each advance the form exactly once: two full
    rounds (hello, name, email, ticket), not fewer (no lost update) and no second session."""
    user = "user-racing"
    async with (
        serving(_opener(backend, request)) as (url, opened),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):

        async def send() -> dict[str, Any]:
            response = await client.post("/message", json={"user": user, "text": "a@example.org"})
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

        replies = await asyncio.gather(*(send() for _ in range(8)))
        (store,) = opened
        found = await store.find_by_user(TenantCtx.new(ENV, TENANT, user=user), user)
    assert found is not None
    assert read_form(found[1]) == Form(step="done", tickets=2)
    kinds = sorted(reply["reply"].split(" ")[0] for reply in replies)
    assert kinds == ["Got", "Got", "Hello!", "Hello!", "Thanks,", "Thanks,", "Ticket", "Ticket"]
    _, raw_url = backend_urls(request, backend)
    if raw_url is not None:
        await drop_namespace(raw_url, request.getfixturevalue("namespace"))


async def test_bad_requests_get_a_400_that_does_not_echo_the_user() -> None:
    """Non-JSON, a wrong shape and an invalid user id each get a 400 with an error code; the
    reply never repeats the user id."""
    async with (
        serving(InMemorySessionStore) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        not_json = await client.post("/message", content=b"{nope")
        wrong_shape = await client.post("/message", json={"user": "alice"})
        bad_user = await client.post("/message", json={"user": "eve <script>", "text": "hi"})
    for response in (not_json, wrong_shape, bad_user):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_input"
    assert "eve" not in bad_user.text
    assert "<script>" not in bad_user.text


def test_the_store_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Without REDIS_URL the service keeps sessions in memory; with it, in that Redis under
    $EXAMPLE_NAMESPACE."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert isinstance(store_from_environment(), InMemorySessionStore)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("EXAMPLE_NAMESPACE", "example-test:session")
    store = store_from_environment()
    assert isinstance(store, RedisSessionStore)
    assert store.keys.namespace == "example-test:session"
    asyncio.run(store.aclose())
