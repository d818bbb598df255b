"""A toy flow runner over HTTP: each user's 3-step support form is a paused session.

    POST /message  {"user": "alice", "text": "hi"}  ->  {"reply": "...", "step": "name"}

A user's first message starts the form, which then asks for a name, an email and the issue,
one message each, and files a ticket; the next message starts a new form. Between messages the
form is a `SessionData` in the store: `cursor.node_pointer` names the step (`form.name`), and
`context_json` holds the answers so far. `take_turn` is the one function that talks to the store.

The store is opened in the app's lifespan and closed on shutdown: Redis when `REDIS_URL` is set
(keys under `$EXAMPLE_NAMESPACE`, default `greentic-example:session`), else in memory.

Run it: `nox -s example` (or `python -m examples.flow_service --port 8000`, or uvicorn's own
command, `uvicorn examples.flow_service:app --loop uvloop`), then
`curl -s localhost:8000/message -d '{"user": "alice", "text": "hi"}'`.

Starlette on uvicorn rather than aiohttp: both are pure Python, Starlette runs on anyio, which the
library already depends on, and the two add four small packages (aiohttp brings seven, five of
them compiled). The `example` group adds uvloop and httptools too, the parts of
`uvicorn[standard]` an HTTP service uses, so it runs as most deployments run it: on uvloop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from greentic_session import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SessionBackendConfig,
    SessionCursor,
    SessionData,
    SessionError,
    SessionStore,
    TenantCtx,
    UnavailableError,
    create_session_store,
)

__all__ = [
    "Form",
    "Turn",
    "advance",
    "app",
    "create_app",
    "store_from_environment",
    "take_turn",
]

ENV, TENANT = "dev", "example"
FLOW_ID = "example.support_form"
DEFAULT_NAMESPACE = "greentic-example:session"


class Form(msgspec.Struct, frozen=True):
    """The form's progress, kept in `SessionData.context_json`."""

    step: str = "start"  # start, name, email, issue, done
    name: str = ""
    email: str = ""
    tickets: int = 0  # forms this user completed


class Turn(NamedTuple):
    reply: str
    form: Form


def advance(form: Form, text: str) -> Turn:
    """One step of the flow: the reply to `text` and the form after it (no I/O)."""
    text = text.strip()
    if form.step == "name" and text:
        return Turn(
            f"Thanks, {text}. What is your email?",
            msgspec.structs.replace(form, step="email", name=text),
        )
    if form.step == "email":
        if "@" not in text:
            return Turn("That does not look like an email; please try again.", form)
        return Turn(
            "Got it. Describe the issue in one line.",
            msgspec.structs.replace(form, step="issue", email=text),
        )
    if form.step == "issue" and text:
        tickets = form.tickets + 1
        reply = f"Ticket {tickets} filed for {form.name} <{form.email}>: {text}"
        return Turn(reply, Form(step="done", tickets=tickets))
    if form.step in ("start", "done"):
        return Turn("Hello! What is your name?", Form(step="name", tickets=form.tickets))
    return Turn("Please answer the question.", form)


_encode, _decode = msgspec.json.encode, msgspec.json.Decoder(Form).decode


def _saved(form: Form) -> dict[str, Any]:
    """The SessionData fields that hold `form`: the cursor names its step."""
    return {
        "cursor": SessionCursor(node_pointer=f"form.{form.step}"),
        "context_json": _encode(form).decode(),
    }


def new_form(ctx: TenantCtx) -> SessionData:
    """The session a user's first message starts."""
    return SessionData(tenant_ctx=ctx, flow_id=FLOW_ID, **_saved(Form()))


def read_form(data: SessionData) -> Form:
    return _decode(data.context_json)


def with_form(data: SessionData, form: Form) -> SessionData:
    return msgspec.structs.replace(data, **_saved(form))


async def take_turn(store: SessionStore, ctx: TenantCtx, user: str, text: str) -> Turn:
    """Resume `user`'s form (starting one on first contact), advance it by `text`, save it.

    `find_or_create` gives each user exactly one session however many first messages race, and
    `update_with` applies the turn with a compare-and-set, retried on conflict, so two messages
    of one user that arrive together both count. `change` may run more than once: it keeps only
    the turn of its last run.
    """
    entry, _created = await store.find_or_create(ctx, user, lambda: new_form(ctx))
    turns: list[Turn] = []

    def change(data: SessionData) -> SessionData:
        turns.append(advance(read_form(data), text))
        return with_form(data, turns[-1].form)

    await store.update_with(entry.key, change, attempts=20)
    return turns[-1]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def message(request: Request) -> JSONResponse:
    """POST /message {"user", "text"}: one turn of that user's form."""
    try:
        body: Any = await request.json()
    except ValueError:
        return _error(400, "invalid_input", "the body must be JSON")
    if not isinstance(body, dict) or not all(
        isinstance(body.get(field), str) for field in ("user", "text")
    ):
        return _error(400, "invalid_input", 'the body must be {"user": str, "text": str}')
    user, text = body["user"], body["text"]
    store: SessionStore = request.state.store
    try:
        ctx = TenantCtx.new(ENV, TENANT, user=user)
        turn = await take_turn(store, ctx, user, text)
    except InvalidInputError as exc:  # messages name the field, never the user id
        return _error(400, exc.code.value, exc.message)
    except (ConflictError, NotFoundError) as exc:  # the session changed under us: try again
        return _error(409, exc.code.value, "the conversation changed meanwhile; send it again")
    except UnavailableError as exc:
        return _error(503, exc.code.value, "the session store is unavailable")
    except SessionError as exc:
        return _error(500, exc.code.value, "internal error")
    return JSONResponse({"reply": turn.reply, "step": turn.form.step})


def store_from_environment() -> SessionStore:
    """Redis at `$REDIS_URL` (namespace `$EXAMPLE_NAMESPACE`) when set, else in memory."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return create_session_store(SessionBackendConfig.in_memory())
    namespace = os.environ.get("EXAMPLE_NAMESPACE", DEFAULT_NAMESPACE)
    return create_session_store(SessionBackendConfig.redis_url(url, namespace=namespace))


def create_app(open_store: Callable[[], SessionStore] = store_from_environment) -> Starlette:
    """The ASGI app; `open_store` builds the store its lifespan opens and closes."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_store() as store:
            yield {"store": store}  # request.state.store in every request

    return Starlette(routes=[Route("/message", message, methods=["POST"])], lifespan=lifespan)


# What `uvicorn examples.flow_service:app` serves; the store is opened only when its lifespan
# starts, so importing the module opens nothing.
app = create_app()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m examples.flow_service",
        description=("The example flow service; in memory unless REDIS_URL is set."),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the event loop (auto: uvloop when installed, as with uvicorn's --loop)",
    )
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, loop=args.loop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
