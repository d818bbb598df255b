"""Every developer command: `nox -s tests`, `contract-3.12`, `contract-3.13`, `lint`, `typecheck`,
`docs`, `quickstart`, `bench`."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import tomllib
from pathlib import Path
from typing import Any

import nox
from packaging.requirements import Requirement

# uv when installed (CI installs it: a fresh environment in seconds), else the standard venv + pip.
nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs on (3.11+)


# The extras the suite, the type check and the benchmarks need: Redis, and sealing's two.
ALL_EXTRAS = "redis,encryption,compression"


def install(session: nox.Session, *groups: str, extras: str = "redis") -> None:
    """Install the package (editable, with `extras`) plus dependency groups from pyproject."""
    session.install("--upgrade", "pip")
    spec = f".[{extras}]" if extras else "."
    group_args = [arg for group in groups for arg in ("--group", group)]
    session.install("-e", spec, *group_args)


# One pytest worker per core (pytest-xdist): the tests wait on their servers much of the time.
# Each worker starts its own private servers; `-- -n 0` runs in one process.
PARALLEL = ("-n", "auto", "--dist", "worksteal")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite, Redis included (a private redis-server is started by the tests)."""
    install(session, "test", extras=ALL_EXTRAS)
    session.run("pytest", *PARALLEL, *session.posargs)


# The other interpreters the contract is held on: the conformance and lifecycle suites (every
# cell of the backend table) run on each, the whole suite on PYTHON.
OTHER_PYTHONS = ("3.12", "3.13")
CONTRACT_SUITES = ("tests/test_conformance.py", "tests/test_lifecycle.py")


def interpreter(version: str) -> str:
    """The path of Python `version`: pyenv's build when there is one (pyenv's shims answer only
    for its global versions), else `pythonX.Y` on PATH, else the bare version for nox to find."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    builds = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))
    if builds:
        return builds[-1]
    return shutil.which(f"python{version}") or version


def contract(session: nox.Session) -> None:
    """The conformance and lifecycle suites on this interpreter (every backend cell)."""
    install(session, "test", extras=ALL_EXTRAS)
    session.run("pytest", *CONTRACT_SUITES, *session.posargs)  # CI runs both versions at once


for _version in OTHER_PYTHONS:
    nox.session(name=f"contract-{_version}", python=interpreter(_version))(contract)


def declared_floors(extras: tuple[str, ...], groups: tuple[str, ...]) -> list[str]:
    """`name==version` for each `>=` floor that pyproject declares in the dependencies, the
    `extras` and the `groups` (included groups too): the oldest versions it claims to work with."""
    pyproject: dict[str, Any] = tomllib.loads(Path("pyproject.toml").read_text())
    declared = list(pyproject["project"]["dependencies"])
    for extra in extras:
        declared += pyproject["project"]["optional-dependencies"][extra]
    pending = list(groups)
    while pending:
        for entry in pyproject["dependency-groups"][pending.pop()]:
            if isinstance(entry, dict):
                pending.append(entry["include-group"])
            else:
                declared.append(entry)
    floors = []
    for text in declared:
        requirement = Requirement(text)
        marker = f"; {requirement.marker}" if requirement.marker else ""
        floors += [
            f"{requirement.name}=={spec.version}{marker}"
            for spec in requirement.specifier
            if spec.operator == ">="
        ]
    return sorted(set(floors))


# What `lowest` runs (about 2.5 min; the whole suite takes several times that): the suites that
# exercise the runtime dependencies. msgspec: schema, wire; anyio: anyio, and the trio rows; every
# backend row (Sentinel and Cluster included) of redis-py and hiredis: conformance, lifecycle,
# waits and the Redis files; cryptography and zstd: sealing, sealed_store and the sealed rows;
# OpenTelemetry: otel.
LOWEST_SUITES = tuple(
    f"tests/test_{name}.py"
    for name in (
        "schema", "wire", "anyio", "mapping", "time_limits", "conformance", "lifecycle", "waits",
        "redis_errors", "redis_event_loops", "redis_hostile", "redis_layout", "redis_lifecycle",
        "redis_security", "redis_sentinel", "redis_transport", "redis_waits", "sealing", "otel",
        "erase_user", "sealed_store",
    )
)  # fmt: skip


@nox.session(python=PYTHON)
def lowest(session: nox.Session) -> None:
    """LOWEST_SUITES (or the given arguments) with every `>=` floor of the package, its extras
    and the test group installed exactly, so that each declared minimum is known to work."""
    extras, groups = (*ALL_EXTRAS.split(","), "otel"), ("test",)
    constraints = Path(session.create_tmp()) / "floors.txt"
    constraints.write_text("\n".join(declared_floors(extras, groups)) + "\n")
    session.log("floors: " + ", ".join(constraints.read_text().splitlines()))
    session.install("--upgrade", "pip")
    group_args = [arg for group in groups for arg in ("--group", group)]
    session.install("-c", str(constraints), "-e", f".[{','.join(extras)}]", *group_args)
    session.run("pytest", *PARALLEL, *(session.posargs or LOWEST_SUITES))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    install(session, "lint", extras="")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and tests/typing (settings in pyproject.toml)."""
    install(session, "typecheck", extras=ALL_EXTRAS)
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The Sphinx site into docs/_build/html, every warning an error; needs no network."""
    install(session, "docs")
    session.run(
        "sphinx-build", "-n", "-W", "--keep-going", "-b", "html",
        "docs", "docs/_build/html", *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHON)
def quickstart(session: nox.Session) -> None:
    """The README walk-through; `-- --redis-url URL` runs it against Redis."""
    install(session)
    session.run("python", "docs/examples/quickstart.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against floors and peers; `-- --quick` for a short run."""
    install(session, "bench", extras=ALL_EXTRAS)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def example(session: nox.Session) -> None:
    """The example flow service on http://127.0.0.1:8000 (Redis if REDIS_URL is set); `--port N`."""
    install(session, "example")
    # Stopped with Ctrl-C or SIGTERM: uvicorn then exits by the signal, which is no failure.
    stopped = [0, -signal.SIGINT, -signal.SIGTERM]
    session.run("python", "-m", "examples.flow_service", *session.posargs, success_codes=stopped)
