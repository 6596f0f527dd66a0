"""A small named registry with entry-point plug-ins, shared by spaces and ops.

Why: spaces, ops (and anything else users plug in) need the same behaviour: a decorator to
register, a lookup whose error names the close matches and how to list everything, ``fnmatch``
wildcards in ``names()``, and plug-ins discovered from an entry-point group where one broken
plug-in warns and the others still load (MLflow's habit).
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want the plain sentence
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> object registry; ``kind`` is used in messages ("space", "op")."""

    def __init__(self, kind: str, entry_point_group: str | None = None, list_hint: str = "") -> None:
        self.kind = kind
        self.group = entry_point_group
        self.list_hint = list_hint
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items and not overwrite and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
        self._items[name] = obj
        return obj

    def decorator(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            return self.register(name, obj, overwrite=overwrite)

        return wrap

    def load_plugins(self) -> None:
        """Import every entry point of the group once; a failing plug-in only warns."""
        if self._plugins_loaded or self.group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not break the platform
                warnings.warn(f"abacus: could not load {self.kind} plug-in {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
                continue
            # An entry point may name the object itself or a module whose import registers it.
            if ep.name not in self._items and not _is_module(obj):
                try:
                    self.register(ep.name, obj)
                except ValueError as exc:
                    warnings.warn(f"abacus: {self.kind} plug-in {ep.name!r}: {exc}", stacklevel=2)

    def get(self, name: str) -> T:
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            listing = f" ({self.list_hint})" if self.list_hint else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} Known {self.kind}s: {', '.join(sorted(self._items)) or 'none'}{listing}") from None

    def names(self, pattern: str = "*") -> list[str]:
        self.load_plugins()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items


def _is_module(obj: object) -> bool:
    import types

    return isinstance(obj, types.ModuleType)
