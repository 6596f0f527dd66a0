"""The DeFeat teacher: train a larger float detector once, export it, load it from a path.

A teacher is an exported detector directory (``supernets.save_exported``: ``arch.json`` +
weights, loaded with ``weights_only``/safetensors, no pickle) plus ``teacher.json`` (how it was
trained and its validation mAP). ``train_teacher`` writes that directory and, when given an
MLflow experiment, logs a run named ``teacher`` with the directory as artifacts and the config
and metrics as params/metrics; the search then names the directory in
``evaluator.options.teacher`` (a config path) and logs it as an artifact of its parent run.

Command line (writes the directory; ``--experiment`` also logs it to MLflow)::

    python -m evaluators.detection.teacher --out runs/detection-teacher --epochs 12 --experiment detection-defeat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from torch import nn

TEACHER_FILE = "teacher.json"


def train_teacher(out_dir: str | Path, *, datamodule: Any, preset: str = "teacher", arch: Mapping[str, Any] | None = None,
                  epochs: int = 12, lr: float = 0.01, optimizer: str = "sgd", seed: int = 0, experiment: str | None = None,
                  tracking_uri: str | None = None, verbose: bool = False) -> dict[str, Any]:
    """Train a float detector of the ``detector`` space (``preset`` or ``arch``) without
    distillation, export it to ``out_dir`` and return its ``teacher.json`` record."""
    import supernets
    from spaces import get_space

    from .evaluate import evaluate_detection

    space = get_space("detector")
    arch = space.validate(space.complete({**space.preset(preset), **(arch or {}), "defeat.method": "none"}))
    task = {"input_shape": list(datamodule.input_shape), "num_classes": int(datamodule.num_classes)}
    model = supernets.build(space, arch, input_shape=tuple(task["input_shape"]), num_classes=task["num_classes"])
    metrics = evaluate_detection(model, datamodule=datamodule, epochs=epochs, lr=lr, optimizer=optimizer, seed=seed, verbose=verbose)
    out = Path(out_dir)
    supernets.save_exported(model, arch, space, task, out)
    describe = datamodule.describe() if callable(getattr(datamodule, "describe", None)) else {"data": getattr(datamodule, "name", "?")}
    record = {"arch": arch, "data": describe, "epochs": int(epochs), "lr": float(lr), "optimizer": optimizer, "seed": int(seed),
              "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    (out / TEACHER_FILE).write_text(json.dumps(record, indent=2, default=str))
    if experiment:
        _log_teacher(out, record, experiment, tracking_uri)
    return record


def _log_teacher(out: Path, record: Mapping[str, Any], experiment: str, tracking_uri: str | None) -> str:
    """One MLflow run ``teacher``: params (arch, recipe), metrics, the directory as artifacts."""
    import mlflow
    from mlflow.tracking import MlflowClient

    # the search's rule (search.tracking.resolve_tracking_uri), restated: evaluators never import search
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name="teacher", tags={"abacus.role": "teacher"})
    rid = run.info.run_id
    params = {f"arch.{k}": str(v) for k, v in record["arch"].items()}
    params.update({"epochs": str(record["epochs"]), "lr": str(record["lr"]), "optimizer": record["optimizer"],
                   "teacher_dir": str(out.resolve())})
    for k, v in params.items():
        client.log_param(rid, k, v[:6000])
    for k, v in record["metrics"].items():
        client.log_metric(rid, k, float(v))
    mlflow.set_tracking_uri(uri)
    client.log_artifacts(rid, str(out), artifact_path="teacher")
    client.set_terminated(rid)
    return rid


def load_teacher(path: str | Path) -> nn.Module:
    """The exported teacher in ``path`` (eval mode); one-line errors for a wrong path."""
    from supernets import load_exported

    p = Path(path)
    if not (p / "arch.json").is_file():
        raise ValueError(f"teacher: expected an exported detector directory (with arch.json) at {str(p)!r}")
    model = load_exported(p)
    if not hasattr(model, "distill_config"):
        raise ValueError(f"teacher: {str(p)!r} holds a {type(model).__name__}, expected a network of the 'detector' space")
    return model.eval()


def ensure_teacher(path: str | Path, *, datamodule: Any, epochs: int | None, lr: float, optimizer: str, seed: int) -> nn.Module:
    """Load the teacher at ``path``; if it is missing and ``epochs`` is given, train it first.

    A file lock next to ``path`` makes concurrent trials (Ray workers) train it once."""
    p = Path(path)
    if (p / "arch.json").is_file():
        return load_teacher(p)
    if epochs is None:
        raise ValueError(f"teacher: {str(p)!r} does not exist; train it first (python -m evaluators.detection.teacher --out {p}) "
                         "or set evaluator option 'teacher_epochs' to train it on first use")
    from filelock import FileLock

    p.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(p) + ".lock"):
        if not (p / "arch.json").is_file():
            tmp = p.with_name(p.name + ".partial")
            train_teacher(tmp, datamodule=datamodule, epochs=int(epochs), lr=lr, optimizer=optimizer, seed=seed)
            tmp.rename(p)
    return load_teacher(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluators.detection.teacher", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory to write the exported teacher to")
    ap.add_argument("--data", default="digits-detection")
    ap.add_argument("--data-kwargs", default="{}", help="JSON object of data-module options")
    ap.add_argument("--preset", default="teacher")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam", "adamw"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--experiment", default=None, help="MLflow experiment to log the teacher run in")
    ap.add_argument("--tracking-uri", default=None)
    args = ap.parse_args(argv)
    import evaluators

    from ..teacher_cli import checked_teacher_inputs

    kwargs = checked_teacher_inputs(args.data_kwargs, args.out)
    if kwargs is None:
        return 2
    try:
        dm = evaluators.get_datamodule(args.data, seed=args.seed, batch_size=args.batch_size, **kwargs)
    except (ValueError, TypeError) as exc:
        print(f"--data: {exc}", file=sys.stderr)
        return 2
    record = train_teacher(args.out, datamodule=dm, preset=args.preset, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                           seed=args.seed, experiment=args.experiment, tracking_uri=args.tracking_uri)
    print(json.dumps(record["metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
