"""What runs where the trial runs (a Ray worker or the driver): build, train, report.

The function takes and returns plain data so Ray can ship it anywhere; every exception is
caught and returned as a failed result with its reason, so one broken candidate never stops
the search (and a NaN loss surfaces as ``NonFiniteLossError`` from the evaluator).

Seeds: ``split_seed`` (the search's) fixes the data split, the same for every trial, retrain and
resume, and the worker checks the validation split it got against the search's fingerprint;
``seed`` (the trial's) is set with ``seed_everything`` *before* the model is built, so it drives
the initial weights as well as data order and augmentation.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from search.states import TrialState


@dataclass
class TrialSpec:
    number: int
    space: Any  # SearchSpace (shipped whole, so driver-only registrations work on workers)
    arch: dict[str, Any]
    data: str
    data_kwargs: dict[str, Any]
    epochs: int
    lr: float
    optimizer: str
    weight_decay: float
    batch_size: int
    seed: int
    threads: int = 1
    accelerator: str = "cpu"
    max_time_s: float | None = None
    scheduler: Any = None  # early-stopping scheduler (object or Ray actor handle), or None
    objectives: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    static_metrics: dict[str, float] = field(default_factory=dict)  # the cost, known before training
    hardware: dict[str, Any] = field(default_factory=dict)  # hw_cost.estimate keywords, for dynamic nets
    save_artifacts: bool = False  # return arch.json + weights so the driver can log them (for export)
    evaluate_fn: str | None = None  # "module:function" replacing evaluators.evaluate
    split_seed: int = 0  # the data split's seed: the search's, never the trial's
    split_sha256: str = ""  # fingerprint of the validation split the search recorded ("" = not checked)
    test: bool = False  # score the final weights on the held-out test split (retrain only)
    train_on_val: bool = False  # train on train + validation (retrain only)
    evaluator_options: dict[str, Any] = field(default_factory=dict)  # task options (detection: teacher)


@dataclass
class TrialResult:
    number: int
    state: TrialState  # COMPLETE, FAIL or PRUNED (INFEASIBLE is decided in the driver)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    reason: str = ""
    node: str = ""
    worker_time_s: float = 0.0
    cost: dict[str, float] = field(default_factory=dict)  # cost measured after training (dynamic nets)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes (workers may be remote)
    score_source: str = ""  # "trained" (run_trial) or "inherited" (supernet weights, search/oneshot.py); "" = never scored
    tags: dict[str, str] = field(default_factory=dict)  # e.g. the fingerprint of the split the trial saw


STATIC_MODEL_METRICS = ("params", "size_mb", "size_mib", "file_mb")  # what a built model tells before training


def static_model_metrics(model: Any) -> dict[str, float]:
    """``params`` and the sizes in MB (``evaluators.model_size``) of a built model: known before
    training, equal to what the evaluation reports afterwards."""
    from evaluators import count_params, model_size

    return {"params": float(count_params(model)), **model_size(model)}


def run_trial(spec: TrialSpec) -> TrialResult:
    """Build and train ``spec``'s candidate; the result is tagged ``score_source: trained``."""
    result = _run_trial(spec)
    result.score_source = "trained"
    return result


def _run_trial(spec: TrialSpec) -> TrialResult:
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    node = _node_id()
    try:
        import torch

        import evaluators
        import supernets

        torch.set_num_threads(max(1, int(spec.threads)))
        from pytorch_lightning import seed_everything

        dm, split = _datamodule(spec)
        tags = {"split.split_seed": str(split["split_seed"]), "split.val_sha256": split["val_sha256"]}
        if spec.split_sha256 and split["val_sha256"] != spec.split_sha256:
            return TrialResult(spec.number, TrialState.FAIL, reason=f"validation split {split['val_sha256']!r} differs from the search's "
                               f"{spec.split_sha256!r} (data changed under the search?)", node=node, tags=tags)
        task = dm.builder_kwargs() if callable(getattr(dm, "builder_kwargs", None)) else {
            "input_shape": tuple(dm.input_shape), "num_classes": int(dm.num_classes)}
        seed_everything(spec.seed, workers=True, verbose=False)  # before the build: the seed fixes the initial weights
        model = supernets.build(spec.space, spec.arch, **task)
        data_task = evaluators.task_of_data(spec.data)
        minimize = (data_task.primary,) if data_task.mode == "min" else ()
        # known before training, so early stopping can rank on them: the cost and the model's size
        static = {**spec.static_metrics, **(static_model_metrics(model) if spec.scheduler is not None else {})}

        def reporter(epoch: int, metrics: dict[str, float]) -> bool:
            row = {k: float(v) for k, v in metrics.items()}
            history.append({"epoch": float(epoch), **row})
            if spec.scheduler is None:
                return False
            from search.schedulers import call, rung_values

            finished, values = rung_values(spec.objectives, static, history, minimize)[-1]
            return bool(call(spec.scheduler, "report", spec.number, finished, values))

        if spec.evaluate_fn:
            from spaces import resolve

            metrics = resolve(spec.evaluate_fn)(model, datamodule=dm, epochs=spec.epochs, seed=spec.seed, reporter=reporter)
        else:
            metrics = evaluators.evaluate(
                model, datamodule=dm, epochs=spec.epochs, lr=spec.lr, optimizer=spec.optimizer,
                weight_decay=spec.weight_decay, batch_size=spec.batch_size, seed=spec.seed,
                reporter=reporter, accelerator=spec.accelerator, max_time_s=spec.max_time_s, **spec.evaluator_options,
                test=spec.test and getattr(dm, "test_set", None) is not None,  # no test split: no test values, not a failure
            )
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        cost = measured_cost(model, tuple(dm.input_shape), spec.hardware)
        artifacts: dict[str, bytes] = {}
        if spec.save_artifacts:
            from evaluators.data.preprocessing import describe_preprocessing
            from search.export import pack_trial_artifacts

            artifacts = pack_trial_artifacts(model, spec.arch, spec.space, task, preprocessing=describe_preprocessing(dm))
        bad = [k for k, v in flat.items() if v != v]
        if bad:
            return TrialResult(spec.number, TrialState.FAIL, flat, history, f"NaN metric(s): {', '.join(bad)}", node, time.perf_counter() - start, tags=tags)
        if metrics.get("stopped_early"):
            reason = f"stopped by the scheduler after epoch {int(flat.get('epochs', len(history)))}"
            return TrialResult(spec.number, TrialState.PRUNED, flat, history, reason, node, time.perf_counter() - start, cost, artifacts, tags=tags)
        return TrialResult(spec.number, TrialState.COMPLETE, flat, history, "", node, time.perf_counter() - start, cost, artifacts, tags=tags)
    except Exception as exc:  # any failure of a candidate is data, not a crash of the search
        tb = traceback.format_exc(limit=6)
        reason = f"{type(exc).__name__}: {exc}".strip()
        return TrialResult(spec.number, TrialState.FAIL, {}, history, reason[:500] + ("\n" + tb if os.environ.get("ABACUS_DEBUG") else ""), node, time.perf_counter() - start)


def warm_up(data: str | None = None, data_kwargs: dict[str, Any] | None = None, split_seed: int = 0, batch_size: int = 64) -> float:
    """Import what every trial needs (torch, Lightning, the evaluators, the ops, the data set's
    module) in this worker process and, given the data's arguments, load and split the data set
    once (kept for the trials, ``_datamodule``); returns the seconds it took. Run once per
    worker at start."""
    start = time.perf_counter()
    import importlib

    import torch  # noqa: F401

    import evaluators.evaluate  # noqa: F401  (Lightning)
    import supernets  # noqa: F401
    from evaluators.data.registry import BUILTIN

    if data in BUILTIN:
        importlib.import_module(BUILTIN[data])
    if data is not None and data_kwargs is not None:
        try:
            _datamodule(TrialSpec(-1, None, {}, data, dict(data_kwargs), 0, 0.0, "", 0.0, batch_size, 0, split_seed=split_seed))
        except Exception:  # a data set that fails here fails the first trial, with its reason
            pass
    return time.perf_counter() - start


_DATA_CACHE: dict[tuple, tuple[Any, dict[str, Any]]] = {}  # this worker process's last data module, set up


def _data_key(data: str, data_kwargs: dict[str, Any], split_seed: int, batch_size: int, train_on_val: bool) -> tuple:
    import json

    return data, json.dumps(data_kwargs, sort_keys=True, default=str), int(split_seed), int(batch_size), bool(train_on_val)


def _datamodule(spec: TrialSpec) -> tuple[Any, dict[str, Any]]:
    """A data module for this trial, as it is right after ``setup`` (and its split identity).

    Why cached: a worker process (a Ray worker is reused across trials) used to load and split
    the data set again for every trial (~40-90 ms for the embedded digits, seconds for files),
    which for short trials was most of a trial's time. The process keeps one set-up module per
    data configuration and hands each trial a shallow copy: the data sets (read-only tensors and
    file lists) are shared, every attribute a trial sets (Lightning's ``trainer``, loaders) is
    its own, so a trial sees exactly what a freshly set-up module would give it.
    """
    import copy

    key = _data_key(spec.data, spec.data_kwargs, spec.split_seed, spec.batch_size, spec.train_on_val)
    hit = _DATA_CACHE.get(key)
    if hit is None:
        import evaluators
        from evaluators.data.splits import split_identity

        extra = {"train_on_val": True} if spec.train_on_val else {}
        dm = evaluators.get_datamodule(spec.data, seed=spec.split_seed, batch_size=spec.batch_size, **extra, **spec.data_kwargs)
        split = split_identity(dm)  # sets the module up
        _DATA_CACHE.clear()  # one data configuration per process: memory stays that of one data set
        _DATA_CACHE[key] = hit = (dm, split)
    dm, split = hit
    return copy.copy(dm), dict(split)


def measured_cost(model: Any, input_shape: tuple[int, ...], hardware: dict[str, Any]) -> dict[str, float]:
    """The cost of a *dynamic* network on the data it was evaluated on (what its data-dependent
    modules measured, ``supernets.dynamic``); static networks cost the same before and after
    training, so nothing is redone."""
    from supernets.dynamic import has_data_dependent_cost

    if not hardware or not has_data_dependent_cost(model):
        return {}
    import hw_cost

    report = hw_cost.estimate(model, (1, *input_shape), **hardware)
    return {k: float(v) for k, v in report.to_dict().items() if isinstance(v, (int, float, bool))}


def _node_id() -> str:
    """The Ray node this trial runs on (several nodes may share a host name), else the host."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - ray not importable or not a ray process
        pass
    return os.uname().nodename
