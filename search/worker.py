"""What runs where the trial runs (a Ray worker or the driver): build, train, report.

The function takes and returns plain data so Ray can ship it anywhere; every exception is
caught and returned as a failed result with its reason, so one broken candidate never stops
the search (and a NaN loss surfaces as ``NonFiniteLossError`` from the evaluator).
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any


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
    evaluator_options: dict[str, Any] = field(default_factory=dict)  # task options (detection: teacher)


@dataclass
class TrialResult:
    number: int
    state: str  # "complete" | "fail" | "pruned"
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    reason: str = ""
    node: str = ""
    worker_time_s: float = 0.0
    cost: dict[str, float] = field(default_factory=dict)  # cost measured after training (dynamic nets)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes (workers may be remote)
    score_source: str = ""  # "trained" (run_trial) or "inherited" (supernet weights, search/oneshot.py); "" = never scored


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
        dm = evaluators.get_datamodule(spec.data, **{"seed": spec.seed, "batch_size": spec.batch_size, **spec.data_kwargs})
        task = dm.builder_kwargs() if callable(getattr(dm, "builder_kwargs", None)) else {
            "input_shape": tuple(dm.input_shape), "num_classes": int(dm.num_classes)}
        model = supernets.build(spec.space, spec.arch, **task)
        primary = evaluators.get_task(getattr(dm, "task", "classification")).primary

        best = {primary: float("-inf")}

        def reporter(epoch: int, metrics: dict[str, float]) -> bool:
            row = {k: float(v) for k, v in metrics.items()}
            history.append({"epoch": float(epoch), **row})
            if spec.scheduler is None:
                return False
            best[primary] = max(best[primary], row.get(primary, float("-inf")))
            known = {**spec.static_metrics, **row, f"best_{primary}": best[primary]}
            values = [known.get(name, float("nan")) for name in spec.objectives]
            from search.schedulers import call

            return bool(call(spec.scheduler, "report", spec.number, epoch + 1, values))

        if spec.evaluate_fn:
            from spaces import resolve

            metrics = resolve(spec.evaluate_fn)(model, datamodule=dm, epochs=spec.epochs, seed=spec.seed, reporter=reporter)
        else:
            metrics = evaluators.evaluate(
                model, datamodule=dm, epochs=spec.epochs, lr=spec.lr, optimizer=spec.optimizer,
                weight_decay=spec.weight_decay, batch_size=spec.batch_size, seed=spec.seed,
                reporter=reporter, accelerator=spec.accelerator, max_time_s=spec.max_time_s, **spec.evaluator_options,
            )
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        cost = measured_cost(model, tuple(dm.input_shape), spec.hardware)
        artifacts: dict[str, bytes] = {}
        if spec.save_artifacts:
            from search.export import pack_trial_artifacts

            artifacts = pack_trial_artifacts(model, spec.arch, spec.space, task)
        bad = [k for k, v in flat.items() if v != v]
        if bad:
            return TrialResult(spec.number, "fail", flat, history, f"NaN metric(s): {', '.join(bad)}", node, time.perf_counter() - start)
        if metrics.get("stopped_early"):
            reason = f"stopped by the scheduler after epoch {int(flat.get('epochs', len(history)))}"
            return TrialResult(spec.number, "pruned", flat, history, reason, node, time.perf_counter() - start, cost, artifacts)
        return TrialResult(spec.number, "complete", flat, history, "", node, time.perf_counter() - start, cost, artifacts)
    except Exception as exc:  # any failure of a candidate is data, not a crash of the search
        tb = traceback.format_exc(limit=6)
        reason = f"{type(exc).__name__}: {exc}".strip()
        return TrialResult(spec.number, "fail", {}, history, reason[:500] + ("\n" + tb if os.environ.get("ABACUS_DEBUG") else ""), node, time.perf_counter() - start)


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
