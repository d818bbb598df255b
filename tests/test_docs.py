"""Every code block in README.md, examples/README.md and docs/**/*.md runs (or is checked).

Python blocks run one by one, each in a fresh namespace as `__main__`: a block must run alone,
pasted into a file, as a reader would try it. Blocks that need Redis read `$REDIS_URL`, which
these tests point at the private redis-server. Shell blocks cannot all run here (they install
packages, start long runs), so they are checked instead: every `nox -s` session, extra and
dependency group they name must exist, and every `python -m` module of this repository must be
importable. A block preceded by `<!-- skip: next -->` is not run; the marker shows in the source.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import re
import runpy
import shlex
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

import greentic_session
from greentic_session.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "examples" / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda page: page.relative_to(ROOT).as_posix(),
)
PAGES = [page for page in PAGES if "_build" not in page.relative_to(ROOT).parts]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OWN_MODULES = ("greentic_session", "benchmarks", "docs", "examples")


def nox_sessions() -> set[str]:
    """Names of the functions noxfile.py decorates with `@nox.session`."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(decorator) for decorator in node.decorator_list)
    }


def command_problems(words: list[str]) -> list[str]:
    """What one shell command names that does not exist."""
    sessions = nox_sessions()
    extras = set(PYPROJECT["project"].get("optional-dependencies", {}))
    groups = set(PYPROJECT.get("dependency-groups", {}))
    problems = []
    is_nox = "nox" in words
    for at, word in enumerate(words):
        following = words[at + 1 :]
        if word == "-s" and is_nox:  # `nox -s lint typecheck`: every word up to the next option
            named = itertools.takewhile(lambda name: not name.startswith("-"), following)
            problems += [f"no nox session {name!r}" for name in named if name not in sessions]
        if word == "--group" and following and following[0] not in groups:
            problems.append(f"no dependency group {following[0]!r}")
        module = following[0] if word == "-m" and following else ""
        if module.split(".")[0] in OWN_MODULES and importlib.util.find_spec(module) is None:
            problems.append(f"no module {module!r}")
        for extra in re.findall(r"^(?:\.|greentic-session)\[([a-z0-9_,-]+)\]$", word):
            problems += [f"no extra {name!r}" for name in extra.split(",") if name not in extras]
    return problems


def shell_problems(source: str) -> list[str]:
    """What a shell block names that does not exist: nox sessions, extras, groups, modules."""
    problems = []
    for line in source.splitlines():
        for command in re.split(r"&&|\|\||;", line.split("#", 1)[0]):
            problems += command_problems(shlex.split(command))
    return problems


class ShellBlockParser:
    """Yields `sh` blocks, evaluated by `shell_problems`."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(
            language=r"sh|bash|console", mapping={"language": "language", "source": "source"}
        )

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            region.parsed = region.lexemes["source"]
            region.evaluator = self.evaluate
            yield region

    @staticmethod
    def evaluate(example: Example) -> str | None:
        problems = shell_problems(str(example.parsed))
        return "; ".join(problems) or None


SYBIL = Sybil(parsers=[SkipParser(), PythonCodeBlockParser(), ShellBlockParser()])


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def reader_env(page: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a reader runs examples in: `$REDIS_URL` names a Redis of their own.

    Only pages that read `REDIS_URL` need the private redis-server; the others run without one.
    """
    if "REDIS_URL" in page.read_text(encoding="utf-8"):
        server: RedisServer = request.getfixturevalue("redis_server")
        monkeypatch.setenv("REDIS_URL", server.url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_code_block_on_the_page_runs(
    page: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Python block runs alone as pasted and each shell block names only things that exist."""
    reader_env(page, request, monkeypatch)
    document = SYBIL.parse(page)
    for example in document.examples():
        if isinstance(example.region.evaluator, PythonEvaluator):
            # A fresh namespace per block: each must run alone, as the reader pastes it.
            document.namespace.clear()
            document.namespace["__name__"] = "__main__"
        try:
            example.evaluate()
        except Exception as exc:
            exc.add_note(f"in the code block at {page_id(page)}, line {example.line}")
            raise


def test_the_pages_hold_code_blocks() -> None:
    """The block runner finds the README's tour and the docs' examples (so it is not vacuous)."""
    python_blocks = {
        page_id(page): sum(
            1
            for example in SYBIL.parse(page).examples()
            if isinstance(example.region.evaluator, PythonEvaluator)
        )
        for page in PAGES
    }
    assert python_blocks["README.md"] >= 1
    assert python_blocks["docs/getting-started.md"] >= 1


def test_shell_check_reports_what_does_not_exist() -> None:
    """The shell-block check names an unknown nox session, extra, group and module."""
    problems = shell_problems(
        "python3 -m nox -s tests nope  # fine then not\n"
        "pip install '.[redis,postgres]' --group docs --group nogroup\n"
        "python -m benchmarks.nothing_here\n"
    )
    assert problems == [
        "no nox session 'nope'",
        "no extra 'postgres'",
        "no dependency group 'nogroup'",
        "no module 'benchmarks.nothing_here'",
    ]


def test_api_reference_has_an_entry_for_every_public_name() -> None:
    """The generated reference lists each name in `__all__`, and RedisSessionStore, exactly once."""
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    reference = conf["public_api_markdown"]()
    entries = re.findall(r"^\.\. auto\w+:: greentic_session\.(\w+)$", reference, re.M)
    assert sorted(entries) == sorted({*greentic_session.__all__, "RedisSessionStore"})
    api_page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert conf["API_MARKER"] in api_page
    for module in ("greentic_session.mapping", "greentic_session.testing"):
        assert f".. automodule:: {module}" in api_page
