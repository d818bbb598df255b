"""A private, throwaway `redis-server` (or `valkey-server`) on a free loopback port.

It never touches a server it did not start. Readiness is the server's own "Ready to accept
connections" log line, not polling.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Self

_READY = "Ready to accept connections"


# The server engines the store is tested on: each speaks the same protocol and runs the same
# Lua, but words some refusals differently.
SERVER_KINDS: tuple[str, ...] = ("redis", "valkey")
_SERVER_BINARIES = {
    "redis": ("REDIS_SERVER", "redis-server"),
    "valkey": ("VALKEY_SERVER", "valkey-server"),
}


def find_server(kind: str = "redis") -> str | None:
    """The binary of server engine `kind`: `$REDIS_SERVER` / `$VALKEY_SERVER` when set, else
    `redis-server` / `valkey-server` on PATH, else None."""
    variable, name = _SERVER_BINARIES[kind]
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    return shutil.which(name)


def find_redis_server() -> str | None:
    """`$REDIS_SERVER`, else `redis-server` on PATH, else None."""
    return find_server("redis")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths for a TLS listener: server cert and key, and the CA clients should trust."""

    cert: str
    key: str
    ca: str


class RedisServer:
    """A `redis-server` child process; `start()`/`stop()`/`restart()` keep the same port."""

    _ready_line = _READY

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        tls: TLSFiles | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH and $REDIS_SERVER is unset")
        self.binary = found
        self.port = port or free_port()
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._dir = tempfile.TemporaryDirectory(prefix="greentic-redis-")
        self._proc: subprocess.Popen[str] | None = None
        self._log: list[str] = []
        self._drainer: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log(self) -> str:
        return "".join(self._log)

    def _args(self) -> list[str]:
        args = [*self._leading_args(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir.name, "--logfile", "", "--daemonize", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key]
            args += ["--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        return args + list(self.extra_args)

    def start(self) -> Self:
        if self._proc is not None and self._proc.poll() is None:
            return self
        ready = threading.Event()
        proc = subprocess.Popen(
            self._args(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        self._log = []
        # Drain the log for the server's whole life so a full pipe can never block it.
        self._drainer = threading.Thread(target=self._drain, args=(proc.stdout, ready), daemon=True)
        self._drainer.start()
        self._proc = proc
        if not ready.wait(self.startup_timeout) or proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log}")
        return self

    def _drain(self, stream: IO[str], ready: threading.Event) -> None:
        with stream:
            for line in stream:
                self._log.append(line)
                if self._ready_line in line:
                    ready.set()
        ready.set()  # the process ended; start() sees poll() is not None

    def stop(self) -> None:
        """Stop the server (SIGKILL: no shutdown save, like a crash)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._drainer is not None:
            self._drainer.join()  # the log pipe hits EOF once the process is gone
            self._drainer = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self._proc is not None})"

    def _leading_args(self) -> list[str]:
        return [self.binary]
