"""Keeping trained trials and taking one away: ``save_trial_artifacts`` and ``abacus export``.

The worker saves each trained model (``supernets.export`` format: ``arch.json``,
``weights.safetensors``, ``weights.pt``); the driver logs that directory as the trial's child
run artifacts. ``export(run_id, out_dir)`` downloads them and adds ``cost.json``: the cost
metrics the search recorded for the run and the full per-layer report recomputed on the
rebuilt model with the search's hardware settings, so the export is self-describing.
"""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from search.runs import RunLookupError, client_for

EVAL_KEYS = ("val_accuracy", "best_val_accuracy", "val_loss", "train_loss", "params", "macs", "wall_time_s", "worker_time_s", "epochs")


def save_trial_artifacts(model, arch: Mapping[str, Any], space_name, task: Mapping[str, Any], out_dir: str | Path,
                         preprocessing: Mapping[str, Any] | None = None) -> Path:
    """Write ``arch.json``, ``weights.safetensors`` and ``weights.pt`` of a trained trial into
    ``out_dir``. ``space_name`` is a registered name or the ``SearchSpace`` itself (the search
    ships the object to workers; its definition is then saved too); ``task`` holds the builder's
    keyword arguments (``input_shape``, ``num_classes``)."""
    from supernets.export import save_exported

    return save_exported(model, arch, space_name, task, out_dir, preprocessing)


def pack_trial_artifacts(model, arch: Mapping[str, Any], space_name, task: Mapping[str, Any],
                         preprocessing: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """The same files as bytes, for a worker on another node: it returns them in its result and
    the driver writes them with ``unpack_trial_artifacts`` (no shared filesystem needed)."""
    with tempfile.TemporaryDirectory(prefix="abacus-trial-") as tmp:
        save_trial_artifacts(model, arch, space_name, task, tmp, preprocessing)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def unpack_trial_artifacts(files: Mapping[str, bytes], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if Path(name).name != name:
            raise ValueError(f"trial artifact name: expected a plain file name, found {name!r}")
        (out / name).write_bytes(data)
    return out


def _literal(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _find_arch(client, run_id: str, path: str = "", depth: int = 0) -> str | None:
    """Artifact folder holding ``arch.json`` (the root, or a folder such as ``model/``)."""
    items = client.list_artifacts(run_id, path or None)
    if any(not a.is_dir and Path(a.path).name == "arch.json" for a in items):
        return path
    if depth < 2:
        for a in items:
            if a.is_dir:
                found = _find_arch(client, run_id, a.path, depth + 1)
                if found is not None:
                    return found
    return None


def _cost_report(out: Path, hardware: Mapping[str, Any]) -> dict[str, Any]:
    from search.cost_inputs import cost_reports
    from supernets.export import exported_space, load_exported, read_arch

    record = read_arch(out)
    task = {k: tuple(v) if isinstance(v, list) else v for k, v in record["task"].items()}
    kwargs = {k: hardware[k] for k in ("style", "pe_array", "default_bits", "mult_impl") if hardware.get(k) is not None}
    if isinstance(kwargs.get("pe_array"), list):
        kwargs["pe_array"] = tuple(kwargs["pe_array"])
    kwargs["device"] = hardware.get("device") or "zcu104"
    # the search's own path: the space's workloads when it describes them, else the exported network
    # traced (the accelerator runs the network, not the normalisation; measured dynamic ratios included)
    report = cost_reports(exported_space(record), [record["arch"]], task["input_shape"], kwargs, task=task,
                          model_for=lambda _a: load_exported(out, raw_inputs=False), rows=True)[0]
    return json.loads(report.to_json())


def export(run_id: str, out_dir: str | Path, tracking_uri: str | None = None) -> Path:
    """Download trial run ``run_id``'s model into ``out_dir`` and write ``cost.json``."""
    from mlflow.artifacts import download_artifacts

    from search.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise RunLookupError(f"RUN_ID: expected a trial run id in {uri}, found no run {run_id!r}") from None
    tags = run.data.tags
    if tags.get("abacus.role") == "search":
        front = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}' and tags.pareto = 'true'", max_results=5)
        hint = f" (its front: {', '.join(r.info.run_id for r in front)})" if front else ""
        raise RunLookupError(f"RUN_ID: expected a trial run, found the search run {run_id}; pass one of its child runs{hint}")
    where = _find_arch(client, run_id)
    if where is None:
        state = tags.get("state", "unknown")
        raise RunLookupError(f"RUN_ID {run_id}: expected model artifacts (arch.json and weights), found none "
                             f"(trial state {state}; only trained trials of searches that keep weights have them)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abacus-export-") as tmp:
        local = Path(download_artifacts(run_id=run_id, artifact_path=where or None, dst_path=tmp, tracking_uri=uri))
        for p in sorted(local.iterdir()):
            if p.is_file():
                shutil.copy2(p, out / p.name)

    metrics = dict(run.data.metrics)
    parent_id = tags.get("mlflow.parentRunId")
    hardware: dict[str, Any] = {}
    if parent_id:
        try:
            pp = client.get_run(parent_id).data.params
            hardware = {k.split(".", 1)[1]: _literal(v) for k, v in pp.items() if k.startswith("hardware.")}
        except Exception:  # a deleted parent: cost from the defaults, and say so below
            hardware = {}
    cost: dict[str, Any] = {
        "run_id": run_id,
        "parent_run_id": parent_id,
        "trial": int(tags["trial_number"]) if tags.get("trial_number", "").isdigit() else None,
        "arch_id": tags.get("arch_id"),
        "hardware": hardware,
        "recorded": {k: v for k, v in sorted(metrics.items()) if k not in EVAL_KEYS and not k.startswith(("train_", "val_", "best_val_"))},
        "evaluation": {k: v for k, v in sorted(metrics.items()) if k in EVAL_KEYS or k.startswith(("train_", "val_", "best_val_"))},
    }
    try:
        cost["report"] = _cost_report(out, hardware)
    except Exception as exc:  # e.g. a device YAML path that only existed where the search ran
        cost["report"] = None
        cost["report_error"] = f"{type(exc).__name__}: {exc}"
    (out / "cost.json").write_text(json.dumps(cost, indent=2))
    return out


def export_command(
    run_id: Annotated[str, typer.Argument(help="the trial: SEARCH:TRIAL (as the front table prints it), a run id or its prefix, or an arch id")],
    out: Annotated[Optional[Path], typer.Option("--out", help="directory to write (default exports/<RUN_ID>)")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")] = None,
) -> None:
    """Write a trial's architecture (arch.json), weights (safetensors and weights_only .pt) and cost report (cost.json)."""
    from search.run_ref import resolve_trial
    from search.tracking import resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(tracking_uri)
        run_id = resolve_trial(client_for(uri), run_id, uri)
        path = export(run_id, out if out is not None else Path("exports") / run_id, uri)
    except RunLookupError as exc:
        typer.echo(f"abacus: error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    files = ", ".join(sorted(p.name for p in path.iterdir() if p.is_file()))
    typer.echo(f"exported {run_id} to {path}: {files}")
    typer.echo(f"load it with: supernets.export.load_exported({str(path)!r})")
