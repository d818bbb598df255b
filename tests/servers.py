"""The server engines the Redis tests run on (`greentic_session.testing.SERVER_KINDS`), as
pytest parameters, and their binaries."""

from __future__ import annotations

import os

import pytest

from greentic_session.testing import SERVER_KINDS, find_server

SERVER_PARAMS = [pytest.param(kind, id=kind) for kind in SERVER_KINDS]


def server_binary(kind: str) -> str:
    """The binary of server engine `kind`: CI must have it (the test fails); elsewhere a missing
    one skips the test, as a missing redis-server does (tests/conftest.py)."""
    binary = find_server(kind)
    if binary is None:
        message = f"no {kind} server binary on PATH or in its environment variable"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the tests on every server kind: {message}")
        pytest.skip(message)
    return binary
