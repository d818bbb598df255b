"""Calls into redis-py's untyped surface, without `# type: ignore`.

redis-py types more of itself release by release (8.2 typed `Sentinel`), so an ignore that a
release makes unused would turn `mypy --strict` red with no change here. Going through `Any`
needs no ignore whatever redis-py's annotations say.
"""

from __future__ import annotations

from typing import Any


def untyped(value: object) -> Any:
    """`value` as `Any`: for redis-py calls that some releases leave unannotated."""
    return value
