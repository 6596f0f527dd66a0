"""Name -> data module registry, so configs choose data by name (``data: cifar10``)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable

_REGISTRY: dict[str, type] = {}
# The built-in data sets by module: listed without importing them (their modules import
# Lightning), imported (and so registered) when first built. A contract test keeps this equal to
# what the modules register.
BUILTIN: dict[str, str] = {
    "digits": "evaluators.data.digits",
    "cifar10": "evaluators.data.cifar",
    "cifar100": "evaluators.data.cifar",
    "imagefolder": "evaluators.data.imagefolder",
    "skimage-sr": "evaluators.data.superres",
    "div2k": "evaluators.data.superres",
    "srfolder": "evaluators.data.superres",
    "set5": "evaluators.data.superres",
    "set14": "evaluators.data.superres",
    "b100": "evaluators.data.superres",
    "urban100": "evaluators.data.superres",
    "digits-detection": "evaluators.data.detection",
    "voc": "evaluators.data.detection_files",
    "coco": "evaluators.data.detection_files",
    "skimage-edges": "evaluators.data.translation",
    "pairs-folder": "evaluators.data.translation",
}
# The task of each built-in data set that is not classification, so a config is checked without
# importing the module (a contract test keeps it equal to the classes' ``task``).
_MODULE_TASKS = {".superres": "superres", ".detection": "detection", ".detection_files": "detection", ".translation": "translation"}
BUILTIN_TASKS: dict[str, str] = {name: task for name, module in BUILTIN.items()
                                 for suffix, task in _MODULE_TASKS.items() if module.endswith(suffix)}
# Torch-free probes ("module:function") of built-in data sets: what a search's data check reads
# instead of importing Lightning (``evaluators.data.probe``; a contract test holds each one equal
# to its data module). A data set without one is checked by building its module.
PROBES: dict[str, str] = {
    "digits": "evaluators.data.digits_arrays:probe",
}


def register_datamodule(name: str) -> Callable[[type], type]:
    """Class decorator registering a data module under ``name`` (lower case, unique)."""
    key = name.lower()

    def deco(cls: type) -> type:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"data set name {name!r} is already registered to {_REGISTRY[key].__qualname__}")
        _REGISTRY[key] = cls
        return cls

    return deco


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered data set names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in set(_REGISTRY) | set(BUILTIN) if fnmatch.fnmatch(n, pattern.lower()))


def _unknown(name: str) -> ValueError:
    key = str(name).lower()
    close = difflib.get_close_matches(key, list_datasets(), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown data set {name!r}{hint} (known: {', '.join(list_datasets())})")


def datamodule_class(name: str) -> type:
    """The class registered as ``name`` (no construction); a built-in module is imported on first use."""
    key = str(name).lower()
    if key not in _REGISTRY and key in BUILTIN:
        import importlib

        importlib.import_module(BUILTIN[key])
    if key not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[key]


def task_name_of(name: str) -> str:
    """The task name of data set ``name``; built-ins answer without importing their module."""
    key = str(name).lower()
    if key not in _REGISTRY and key in BUILTIN:
        return BUILTIN_TASKS.get(key, "classification")
    return str(getattr(datamodule_class(name), "task", "classification"))


def _check_options(key: str, fn: Callable, kwargs: dict) -> None:
    """Unknown or missing options of data set ``key`` against ``fn``'s signature (a data module's
    ``__init__`` or its probe): one-line ``TypeError`` naming what is accepted."""
    params = inspect.signature(fn).parameters
    accepted = [p for p in params if p != "self" and params[p].kind not in (inspect.Parameter.VAR_KEYWORD,)]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"data set {key!r} got unexpected option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
            )
        missing = [
            p
            for p in accepted
            if params[p].default is inspect.Parameter.empty
            and params[p].kind is not inspect.Parameter.VAR_POSITIONAL
            and p not in kwargs
        ]
        if missing:
            raise TypeError(f"data set {key!r} needs option(s) {', '.join(missing)} (e.g. data_kwargs={{{missing[0]!r}: ...}})")


def get_datamodule(name: str, **kwargs):
    """Build the data module registered as ``name`` with ``kwargs``.

    Unknown names and unknown keyword arguments raise a one-line ``ValueError``/``TypeError`` that
    names the close matches and what is accepted.
    """
    key = str(name).lower()
    cls = datamodule_class(name)
    _check_options(key, cls.__init__, kwargs)
    return cls(**kwargs)


def probe_function(name: str) -> Callable | None:
    """The torch-free probe of built-in data set ``name`` (``evaluators.data.probe``), or None when
    it has none or a class registered in this process replaced the built-in under that name."""
    key = str(name).lower()
    where = PROBES.get(key)
    if where is None or (key in _REGISTRY and _REGISTRY[key].__module__ != BUILTIN.get(key)):
        return None
    import importlib

    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)


def probe_datamodule(name: str, **kwargs):
    """``get_datamodule(name, **kwargs)`` set up, as a ``DataProbe`` read without torch, or None
    when the data set has no probe (build the module then). Same option errors as building it."""
    fn = probe_function(name)
    if fn is None:
        return None
    _check_options(str(name).lower(), fn, kwargs)
    return fn(**kwargs)
