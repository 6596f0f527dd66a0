"""A trained network as a directory, and back: ``save_exported`` / ``load_exported``.

The directory is what a user takes away from a search, so reading it needs only this package,
``spaces`` and torch (no optuna, ray, mlflow or ``search``):

- ``arch.json``: format version, space name (and the space's own definition, so a space that
  was registered only in the searching process can still be rebuilt), the architecture, its id
  and the task keyword arguments given to the builder (``input_shape``, ``num_classes``, ...),
  and ``preprocessing``: what a raw input is and the normalisation the network was trained
  behind (``scale``, per-channel ``mean``/``std``, ``input_shape``, ``class_names``), so
  ``load_exported`` returns a model that takes raw inputs (``supernets.preprocess``);
- ``weights.safetensors``: every tensor of the ``state_dict`` (no pickle at all); modules'
  non-tensor ``_extra_state`` (schedules such as the Winograd adder's ``p``) goes, as JSON, in
  the file's metadata, because safetensors stores tensors only;
- ``weights.pt``: the plain ``state_dict`` for ``torch.load(path, weights_only=True)`` (extra
  states are dicts of numbers, which the restricted unpickler accepts).

An export directory is *data* from elsewhere: loading never imports or calls anything it names.
The space comes from the registry (``get_space``, entry-point plug-ins included); a saved
definition is used only when its builder and workloads function are ones an installed space
already uses. Weights are read with safetensors (no pickle) or ``torch.load(weights_only=True)``.
Every problem with the directory is an ``ExportError``: one line naming the file.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from spaces import SearchSpace, UnknownNameError, arch_id, get_space

FORMAT = "abacus-export/1"
ARCH_FILE = "arch.json"
SAFETENSORS_FILE = "weights.safetensors"
TORCH_FILE = "weights.pt"
_EXTRA = "_extra_state"  # torch's suffix for get_extra_state() entries of a state_dict
_META_EXTRA = "abacus.extra_state"


class ExportError(ValueError):
    """An export directory that cannot be loaded: one line naming the file and what is wrong."""


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit] if text else ''}".rstrip(": ")


def _providing_distribution(target: Any) -> str | None:
    """The installed distribution whose top-level package holds ``target`` ("module:function")."""
    if not isinstance(target, str) or ":" not in target:
        return None
    top = target.split(":", 1)[0].split(".", 1)[0]
    dists = _distributions().get(top) or []
    return dists[0] if dists else None


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    import importlib.metadata as md

    return md.packages_distributions()


def _jsonable_task(task: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in task.items():
        v = list(v) if isinstance(v, tuple) else v
        try:
            json.dumps(v)
        except TypeError:
            raise TypeError(f"task argument {k!r}: expected a JSON value (numbers, strings, lists), found {type(v).__name__}") from None
        out[k] = v
    return out


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_exported(model: nn.Module, arch: Mapping[str, Any], space: str | SearchSpace, task: Mapping[str, Any],
                  out_dir: str | Path, preprocessing: Mapping[str, Any] | None = None) -> Path:
    """Write ``arch.json``, ``weights.safetensors`` and ``weights.pt`` for ``model`` into ``out_dir``.

    ``task`` holds the builder's keyword arguments (what ``supernets.build`` got besides the
    space and the architecture); ``load_exported`` passes them back unchanged (lists -> tuples).
    """
    from safetensors.torch import save_file

    sp = space if isinstance(space, SearchSpace) else get_space(space)
    arch = sp.validate(arch)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {}
    for k, v in state.items():
        if torch.is_tensor(v):
            # clone: safetensors refuses tensors that share storage (tied weights, views)
            tensors[k] = v.detach().to("cpu").contiguous().clone()
        else:
            extra[k] = v
    meta = {"format": FORMAT}
    try:
        meta[_META_EXTRA] = json.dumps(extra)
    except TypeError:
        pass  # not JSON: the loader notices the missing key and uses weights.pt instead
    definition = None
    if isinstance(sp.builder, str) and (sp.workloads_fn is None or isinstance(sp.workloads_fn, str)):
        definition = sp.to_dict()
    record = {
        "format": FORMAT,
        "space": sp.name,
        "arch": arch,
        "arch_id": arch_id(arch),
        "task": _jsonable_task(task),
        "preprocessing": None if preprocessing is None else _jsonable_task(preprocessing),
        "space_definition": definition,
        "plugin": _providing_distribution(sp.to_dict()["builder"]),
        "weights": {"safetensors": SAFETENSORS_FILE, "torch": TORCH_FILE},
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "torch_version": torch.__version__,
    }
    _atomic_write(out / SAFETENSORS_FILE, lambda p: save_file(tensors, str(p), metadata=meta))
    cpu_state = {k: (v.detach().to("cpu") if torch.is_tensor(v) else v) for k, v in state.items()}
    _atomic_write(out / TORCH_FILE, lambda p: torch.save(cpu_state, p))
    _atomic_write(out / ARCH_FILE, lambda p: p.write_text(json.dumps(record, indent=2)))
    return out


def read_arch(directory: str | Path) -> dict[str, Any]:
    """The parsed ``arch.json`` of an export directory, checked for the fields the loader needs."""
    path = Path(directory) / ARCH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"export directory {str(directory)!r}: expected {ARCH_FILE}, found none")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"{path}: expected UTF-8 JSON, found undecodable bytes") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: expected JSON, found invalid text ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(record, dict):
        raise ExportError(f"{path}: expected a JSON object, found {type(record).__name__}")
    missing = [k for k in ("space", "arch", "task") if k not in record]
    if missing:
        raise ExportError(f"{path}: expected keys space, arch and task, missing {', '.join(missing)}")
    for key, kind in (("space", str), ("arch", dict), ("task", dict)):
        if not isinstance(record[key], kind):
            raise ExportError(f"{path}: expected '{key}' to be a JSON {'string' if kind is str else 'object'}, found {type(record[key]).__name__}")
    shape = record["task"].get("input_shape")
    if shape is not None and not (isinstance(shape, list) and 1 <= len(shape) <= 4
                                  and all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536 for x in shape)):
        raise ExportError(f"{path}: expected task.input_shape as 1 to 4 integers in [1, 65536], found {shape!r}")
    return record


def _installed_callables() -> tuple[set[str], set[str]]:
    """Builders and workloads functions of the installed spaces (registry and entry points)."""
    from spaces import list_spaces

    builders, workloads = set(), set()
    for name in list_spaces():
        d = get_space(name).to_dict()
        if d["builder"]:
            builders.add(d["builder"])
        if d["workloads_fn"]:
            workloads.add(d["workloads_fn"])
    return builders, workloads


def exported_space(record: Mapping[str, Any], source: str = ARCH_FILE) -> SearchSpace:
    """The installed space of that name; else the definition saved with the export, but only when
    its builder (and workloads function) are those of an installed space: a downloaded folder
    never makes us import or call what it names."""
    name = record["space"]
    definition = record.get("space_definition")
    try:
        space = get_space(name)
    except UnknownNameError:
        pass
    else:  # the builder options the model was built with (a config's ``space_options``) travel with it
        options = definition.get("options") if isinstance(definition, dict) else None
        if options:
            try:
                return space.with_options(options)
            except ValueError as exc:
                raise ExportError(f"{source}: expected builder options of space {name!r}, found {_first_line(exc)}") from None
        return space
    why = ""
    if isinstance(definition, dict):
        builders, workloads = _installed_callables()
        builder, wl = definition.get("builder"), definition.get("workloads_fn")
        if builder in builders and (wl is None or wl in workloads):
            try:
                return SearchSpace.from_dict(definition)
            except (KeyError, TypeError, ValueError) as exc:
                raise ExportError(f"{source}: expected a valid space_definition for {name!r}, found {_first_line(exc)}") from None
        why = f" (its saved builder {str(builder)[:80]!r} is not one of an installed space; exports never run code they name)"
    plugin = record.get("plugin")
    which = f" (distribution {str(plugin)[:80]!r})" if isinstance(plugin, str) and plugin else ""
    raise ExportError(f"{source}: space {name!r} is not installed{why}; install the plug-in that provides it{which}, "
                      f"which registers it in the 'abacus.spaces' entry points")


def _read_state(directory: Path, prefer: str) -> dict[str, Any]:
    st, pt = directory / SAFETENSORS_FILE, directory / TORCH_FILE
    if prefer not in ("safetensors", "torch"):
        raise ValueError(f"prefer: expected 'safetensors' or 'torch', found {prefer!r}")
    if prefer == "safetensors" and st.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(st), framework="pt", device="cpu") as fh:
                meta = fh.metadata() or {}
                if _META_EXTRA in meta or not pt.is_file():
                    state: dict[str, Any] = {k: fh.get_tensor(k) for k in fh.keys()}
                    extra = json.loads(meta.get(_META_EXTRA, "{}"))
                    if not isinstance(extra, dict):
                        raise ValueError(f"metadata {_META_EXTRA}: expected a JSON object")
                    state.update(extra)
                    return state
        except Exception as exc:  # safetensors raises its own error types for a corrupt file
            raise ExportError(f"{st}: expected a safetensors file of the model's tensors, found unreadable data ({_first_line(exc)})") from None
    if pt.is_file():
        import pickle
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
                state = torch.load(pt, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
            # weights_only refuses anything but tensors and plain containers: a crafted pickle ends here
            lines = [x.strip() for x in str(exc).splitlines() if "Unsupported global" in x or "Unsupported operand" in x]
            detail = f"{type(exc).__name__}: {lines[0][:200]}" if lines else _first_line(exc)
            raise ExportError(f"{pt}: expected a state_dict readable with torch.load(weights_only=True), found what it refuses ({detail})") from None
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise ExportError(f"{pt}: expected a state_dict (a dict of names to tensors), found {type(state).__name__}")
        return state
    raise FileNotFoundError(f"export directory {str(directory)!r}: expected {SAFETENSORS_FILE} or {TORCH_FILE}, found neither")


def load_exported(directory: str | Path, *, prefer: str = "safetensors", strict: bool = True, raw_inputs: bool = True) -> nn.Module:
    """Rebuild the exported network from ``arch.json`` and load its weights; returned in eval mode
    on the CPU. Reads ``weights.safetensors`` when present (no pickle), else ``weights.pt``
    with ``weights_only=True``; ``prefer="torch"`` reverses that.

    When ``arch.json`` records the preprocessing (exports of searches) and ``raw_inputs`` is true,
    the result is a ``supernets.preprocess.RawInputModel``: it takes raw inputs (see its
    ``raw_input`` text, e.g. digits images of values 0..16), normalises them as in training and
    has ``class_names``; the bare network is its ``.network``. ``raw_inputs=False`` returns the
    bare network, which expects normalised inputs."""
    from supernets.build import build

    directory = Path(directory)
    record = read_arch(directory)
    if not (directory / SAFETENSORS_FILE).is_file() and not (directory / TORCH_FILE).is_file():
        raise FileNotFoundError(f"export directory {str(directory)!r}: expected {SAFETENSORS_FILE} or {TORCH_FILE}, found neither")
    task = {k: tuple(v) if isinstance(v, list) else v for k, v in record["task"].items()}
    source = str(directory / ARCH_FILE)
    space = exported_space(record, source)
    try:
        model = build(space, record["arch"], **task)
    except (ValueError, TypeError) as exc:  # an architecture or task the installed builder refuses
        raise ExportError(f"{source}: expected an architecture and task that space {space.name!r} builds, found {_first_line(exc, 300)}") from None
    state = _read_state(directory, prefer)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines())[:300]
        raise ExportError(f"{directory}: expected weights matching the architecture in {ARCH_FILE}, found {detail}") from None
    if raw_inputs and record.get("preprocessing"):
        from supernets.preprocess import RawInputModel

        return RawInputModel(model, record["preprocessing"]).eval()
    return model.eval()
