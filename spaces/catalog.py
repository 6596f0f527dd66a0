"""The space registry: ``@register_space``, ``get_space``, ``list_spaces``; plug-ins via ``abacus.spaces``.

A registered entry is either a ``SearchSpace`` or a zero-argument factory returning one; an
entry point of the group ``abacus.spaces`` may name either (or a module whose import registers).
"""

from __future__ import annotations

from typing import Callable

from spaces.registry import Registry
from spaces.space import SearchSpace

SPACES: Registry = Registry("space", entry_point_group="abacus.spaces", list_hint="run 'abacus spaces' to list them")


def register_space(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator for a ``SearchSpace`` factory (or call it with a space: ``register_space(n)(space)``)."""
    return SPACES.decorator(name, overwrite=overwrite)


def get_space(name: str) -> SearchSpace:
    entry = SPACES.get(name)
    space = entry() if callable(entry) and not isinstance(entry, SearchSpace) else entry
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space {name!r}: expected the registry entry to give a SearchSpace, found {type(space).__name__}")
    return space


def list_spaces(pattern: str = "*") -> list[str]:
    return SPACES.names(pattern)
