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
"""

from __future__ import annotations

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
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: expected JSON, found invalid text ({exc.msg} at line {exc.lineno})") from None
    missing = [k for k in ("space", "arch", "task") if k not in record]
    if missing:
        raise ValueError(f"{path}: expected keys space, arch and task, missing {', '.join(missing)}")
    return record


def exported_space(record: Mapping[str, Any]) -> SearchSpace:
    """The registered space of that name; else the definition saved with the export."""
    try:
        return get_space(record["space"])
    except UnknownNameError:
        if record.get("space_definition"):
            return SearchSpace.from_dict(record["space_definition"])
        raise


def _read_state(directory: Path, prefer: str) -> dict[str, Any]:
    st, pt = directory / SAFETENSORS_FILE, directory / TORCH_FILE
    if prefer not in ("safetensors", "torch"):
        raise ValueError(f"prefer: expected 'safetensors' or 'torch', found {prefer!r}")
    if prefer == "safetensors" and st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            if _META_EXTRA in meta or not pt.is_file():
                state: dict[str, Any] = {k: fh.get_tensor(k) for k in fh.keys()}
                state.update(json.loads(meta.get(_META_EXTRA, "{}")))
                return state
    if pt.is_file():
        return torch.load(pt, map_location="cpu", weights_only=True)
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
    model = build(exported_space(record), record["arch"], **task)
    state = _read_state(directory, prefer)
    model.load_state_dict(state, strict=strict)
    if raw_inputs and record.get("preprocessing"):
        from supernets.preprocess import RawInputModel

        return RawInputModel(model, record["preprocessing"]).eval()
    return model.eval()
