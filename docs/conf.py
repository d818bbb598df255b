"""Sphinx configuration: furo, MyST pages, API reference from docstrings; builds offline.

Built by `nox -s docs` as `sphinx-build -n -W --keep-going`: every warning, an unresolved
reference included, fails the build. Nothing is fetched at build time (no intersphinx), so
references to the standard library and third-party types cannot resolve: `nitpick_ignore` names
the few that signatures show.
"""

from __future__ import annotations

from importlib.metadata import version as installed_version
from typing import Any

project = "greentic-session"
author = "Greentic"
copyright = "Greentic"
release = installed_version("greentic-session")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples"]

html_theme = "furo"
html_title = f"greentic-session {release}"

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Docstrings are reStructuredText with Markdown habits: `name` means code, not a citation.
default_role = "literal"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True

nitpicky = True
# Types that signatures and base-class lines name and that no page here documents.
nitpick_ignore = [
    ("py:class", "abc.ABC"),
    ("py:class", "collections.abc.Sequence"),
    ("py:class", "enum.StrEnum"),
    ("py:class", "msgspec.Struct"),
    ("py:class", "redis.asyncio.client.Redis"),
]


def _public_bases(app: Any, name: str, obj: object, options: Any, bases: list[type]) -> None:
    """Show a private base class (`_Wire`) as the public classes it derives from."""
    shown: list[type] = []
    for base in bases:
        shown.extend(base.__bases__ if base.__name__.startswith("_") else (base,))
    bases[:] = shown


def _resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve `greentic_session.<module>.<Name>` to `greentic_session.<Name>`.

    Signatures name a type by the module that defines it, the pages document it where users
    import it from. Classes carry autodoc's `:canonical:` alias already; this covers the rest
    (`SessionKey` is a NewType, which has no canonical alias).
    """
    import greentic_session

    target: str = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("greentic_session."):
        return None
    name = target.rpartition(".")[2]
    if name not in greentic_session.__all__:
        return None
    return env.get_domain("py").resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        f"greentic_session.{name}",
        node,
        contnode,
    )


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("missing-reference", _resolve_reexport)
