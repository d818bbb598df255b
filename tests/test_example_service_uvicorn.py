"""The example flow service as users run it: `python -m uvicorn examples.flow_service:app` in its
own process, on asyncio and on uvloop (`--loop`; uvloop is what `uvicorn[standard]` picks), with
httptools, in memory and on a private redis-server, driven over real HTTP.
(tests/test_example_service.py runs the app in this process, on h11.)

A service is ready when uvicorn logs "Uvicorn running on <url>" (the OS picks the port,
`--port 0`, and that line names it). It is stopped with SIGTERM and must shut down cleanly: in
time, its lifespan's shutdown (which closes the store) complete, and no error, traceback or
warning in its output (the child runs with warnings as errors, as the suite does). That the
lifespan does close the store is checked in-process, where the store can be seen. A service that
hangs fails the test within HTTP_TIMEOUT per request and STOP_TIMEOUT to stop, with the
service's output added to the failure; it never holds the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from greentic_session.testing import LOOP_KINDS
from tests.conftest import drop_namespace

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0  # a cold interpreter importing the app on a busy 2-core machine
HTTP_TIMEOUT = 5.0  # per request; every reply takes milliseconds
STOP_TIMEOUT = 10.0
USERS = 6

LOOP_PARAMS = [pytest.param(kind, id=kind) for kind in LOOP_KINDS]
STORE_PARAMS = [pytest.param(kind, id=kind) for kind in ("memory", "redis")]
_RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+) ")
# Lines that mean something went wrong: uvicorn's ERROR/CRITICAL records, a traceback, an
# exception a callback or __del__ swallowed, a warning printed (ResourceWarning for a leak).
_TROUBLE = re.compile(r"^(ERROR|CRITICAL)|Traceback|Exception|Warning", re.MULTILINE)


class Service:
    """`python -m uvicorn examples.flow_service:app --loop <loop>` in a child process, started
    and ready; its output is drained for its whole life (a full pipe would block it) and kept."""

    def __init__(self, loop: str, env: dict[str, str]) -> None:
        self.url = ""
        self._lines: list[str] = []
        self._started = threading.Event()
        command = [sys.executable, "-W", "error", "-m", "uvicorn", "examples.flow_service:app"]
        command += ["--host", "127.0.0.1", "--port", "0", "--loop", loop, "--http", "httptools"]
        command += ["--lifespan", "on"]  # a store that fails to open stops the server
        command += ["--no-access-log"]  # keeps a failure's output to what went wrong
        self._process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self._started.wait(START_TIMEOUT) or not self.url:
            self.kill()
            pytest.fail(f"uvicorn was not running within {START_TIMEOUT} s:\n{self.log}")

    def _drain(self) -> None:
        assert self._process.stdout is not None
        with self._process.stdout as output:
            for line in output:
                self._lines.append(line)
                running = _RUNNING.search(line)
                if running and not self.url:
                    self.url = running[1]
                    self._started.set()
        self._started.set()  # it exited without running: the constructor fails with its log

    @property
    def log(self) -> str:
        return "".join(self._lines)

    def stop(self) -> None:
        """SIGTERM, as a process manager stops it; fails unless it finishes within STOP_TIMEOUT,
        having run its lifespan's shutdown, with nothing wrong in its output."""
        self._process.send_signal(signal.SIGTERM)
        try:
            status = self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"uvicorn did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{self.log}")
        self._drainer.join()
        # uvicorn re-raises the signal it handled once it has finished, so its exit status
        # says SIGTERM ended it; "Finished server process" says it got that far.
        assert status == -signal.SIGTERM, self.log
        assert "Application shutdown complete." in self.log, self.log
        assert "Finished server process" in self.log, self.log
        assert _TROUBLE.search(self.log) is None, self.log

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._drainer.join()


@contextlib.contextmanager
def serving(loop: str, env: dict[str, str]) -> Iterator[Service]:
    """A running service; killed if the block fails (its output added to the failure)."""
    service = Service(loop, env)
    try:
        yield service
    except BaseException as exc:
        service.kill()
        exc.add_note(f"uvicorn's output:\n{service.log}")
        raise
    finally:
        service.kill()  # a no-op once stopped


def service_env(store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The child's environment: in memory, or the private redis-server under the test's own
    namespace (the service reads REDIS_URL and EXAMPLE_NAMESPACE)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EXAMPLE_NAMESPACE")}
    if store == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        env["EXAMPLE_NAMESPACE"] = request.getfixturevalue("namespace")
    return env


def drop_test_keys(store: str, request: pytest.FixtureRequest) -> None:
    if store == "redis":
        url, namespace = (request.getfixturevalue(name) for name in ("redis_url", "namespace"))
        asyncio.run(drop_namespace(url, namespace))


async def converse(client: httpx.AsyncClient, user: str, texts: list[str]) -> list[dict[str, str]]:
    """Send `texts` as `user`, one after the other; the JSON replies (each must be a 200)."""
    replies = []
    for text in texts:
        response = await client.post("/message", json={"user": user, "text": text})
        assert response.status_code == 200, response.text
        replies.append(response.json())
    return replies


def talk(url: str, scripts: dict[str, list[str]]) -> dict[str, list[dict[str, str]]]:
    """Every user's script, users concurrently, over one HTTP client; each user's replies."""

    async def run() -> dict[str, list[dict[str, str]]]:
        async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT) as client:
            users = list(scripts)
            replies = await asyncio.gather(*(converse(client, u, scripts[u]) for u in users))
        return dict(zip(users, replies, strict=True))

    return asyncio.run(run())


@pytest.mark.parametrize("store", STORE_PARAMS)
@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_concurrent_users_file_tickets_over_http(
    loop: str, store: str, request: pytest.FixtureRequest
) -> None:
    """Users talking at once each walk their own form to a ticket and into a new form, a bad
    request gets a 400 that does not echo the user id, and the service then stops cleanly."""
    users = [f"user-{n}" for n in range(USERS)]
    script = ["hi", "Name {u}", "not-an-email", "{u}@example.org", "issue of {u}", "again"]
    with serving(loop, service_env(store, request)) as service:
        replies = talk(service.url, {u: [line.format(u=u) for line in script] for u in users})
        bad_user = httpx.post(
            f"{service.url}/message",
            json={"user": "eve <script>", "text": "hi"},
            timeout=HTTP_TIMEOUT,
        )
        service.stop()
    for user in users:
        assert replies[user] == [
            {"reply": "Hello! What is your name?", "step": "name"},
            {"reply": f"Thanks, Name {user}. What is your email?", "step": "email"},
            {"reply": "That does not look like an email; please try again.", "step": "email"},
            {"reply": "Got it. Describe the issue in one line.", "step": "issue"},
            {
                "reply": f"Ticket 1 filed for Name {user} <{user}@example.org>: issue of {user}",
                "step": "done",
            },
            {"reply": "Hello! What is your name?", "step": "name"},
        ]
    assert bad_user.status_code == 400
    assert bad_user.json()["error"] == "invalid_input"
    assert "eve" not in bad_user.text
    drop_test_keys(store, request)


@pytest.mark.parametrize("store", STORE_PARAMS)
@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_a_paused_form_outlives_a_restart_only_in_redis(
    loop: str, store: str, request: pytest.FixtureRequest
) -> None:
    """Forms paused halfway resume in a restarted service when it keeps sessions in Redis
    (REDIS_URL set), and start over when it keeps them in memory."""
    users = [f"user-{n}" for n in range(USERS)]
    env = service_env(store, request)
    with serving(loop, env) as first:
        before = talk(first.url, {u: ["hi", f"Name {u}"] for u in users})
        first.stop()
    with serving(loop, env) as second:
        after = talk(second.url, {u: [f"{u}@example.org", "printer on fire"] for u in users})
        second.stop()
    for user in users:
        assert [reply["step"] for reply in before[user]] == ["name", "email"]
        if store == "redis":
            assert after[user] == [
                {"reply": "Got it. Describe the issue in one line.", "step": "issue"},
                {
                    "reply": f"Ticket 1 filed for Name {user} <{user}@example.org>: "
                    "printer on fire",
                    "step": "done",
                },
            ]
        else:  # a new process, a new memory: the email starts a new form
            assert [reply["step"] for reply in after[user]] == ["name", "email"]
            assert after[user][0]["reply"] == "Hello! What is your name?"
    drop_test_keys(store, request)
