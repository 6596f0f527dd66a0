"""Multi-fidelity early stopping: asynchronous successive halving for one or several objectives.

Why ours: Optuna's pruners refuse multi-objective studies and Ray Tune's schedulers rank by one
metric. ``MOASHA`` is ASHA (Li et al., MLSys 2020, arXiv 1810.05934) with the promotion rule
made multi-objective: at each rung the trials that reached it are ordered by non-dominated rank,
ties broken by crowding distance (NSGA-II) or hypervolume contribution; a trial continues past
the rung when it is among the top ``max(1, n // reduction_factor)`` of the ``n`` trials recorded
there so far (for the first ``reduction_factor - 1`` arrivals, only the best continues, as
Optuna's ``SuccessiveHalvingPruner`` does). Asynchronous: no trial waits for others.

Single-objective searches use Optuna's own pruners through ``OptunaPrunerScheduler``, which
mirrors the reports into an in-memory Optuna study and asks the pruner, as Optuna intends.

A scheduler lives in one place (a Ray actor, or the driver for the local executor) and workers
call ``report(trial, epoch, values) -> stop?`` after each epoch (``epoch`` counts finished epochs).
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

import numpy as np


def rung_epochs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """Epoch counts at which trials are compared: min, min*eta, min*eta^2, ... below max."""
    if min_epochs < 1 or reduction_factor < 2:
        raise ValueError(f"successive halving needs min_epochs >= 1 and reduction_factor >= 2, got {min_epochs}, {reduction_factor}")
    rungs, r = [], min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= reduction_factor
    return rungs


def rung_values(objectives: Sequence[str], static: dict[str, float], history: Sequence[dict[str, float]],
                minimize: Collection[str] = ()) -> list[tuple[int, list[float]]]:
    """(finished epochs, objective values) after each epoch of ``history``, as a worker reports
    them: the per-epoch metrics, the running best of every ``best_<metric>`` objective (the
    task's primary metric: ``val_accuracy``, ``val_psnr``, ...; the lowest for metrics in
    ``minimize``, a task whose primary is minimised: ``val_fid``) and the static values (cost,
    model size). The worker and the resume (which rebuilds the rungs from the journal) both use this."""
    bests = {name: name[len("best_"):] for name in objectives if name.startswith("best_")}
    low = {name for name, metric in bests.items() if metric in minimize}
    out, best = [], {name: float("inf") if name in low else float("-inf") for name in bests}
    for i, row in enumerate(history):
        for name, metric in bests.items():
            if name in low:
                best[name] = min(best[name], float(row.get(metric, float("inf"))))
            else:
                best[name] = max(best[name], float(row.get(metric, float("-inf"))))
        known = {**static, **row, **best}
        out.append((int(row.get("epoch", i)) + 1, [float(known.get(name, float("nan"))) for name in objectives]))
    return out


class MOASHA:
    def __init__(self, directions: Sequence[str], max_epochs: int, min_epochs: int = 1, reduction_factor: int = 3,
                 tie_break: str = "crowding") -> None:
        self.directions = list(directions)
        self.rungs = rung_epochs(min_epochs, reduction_factor, max_epochs)
        self.eta = reduction_factor
        self.tie_break = tie_break
        self.records: dict[int, dict[int, list[float]]] = {r: {} for r in self.rungs}
        self.stopped: dict[int, int] = {}

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        """Record ``values`` of ``trial`` after ``epoch`` epochs; True means stop the trial here."""
        from search.samplers.ranking import selection_order

        if epoch not in self.records:
            return False
        if any(v != v for v in values):
            self.stopped[trial] = epoch
            return True
        rung = self.records[epoch]
        rung[trial] = [float(v) for v in values]
        ids = list(rung)
        order = selection_order(np.array([rung[t] for t in ids]), self.directions, self.tie_break)
        k = max(1, len(ids) // self.eta)
        promoted = {ids[i] for i in order[:k]}
        if trial in promoted:
            return False
        self.stopped[trial] = epoch
        return True

    def finish(self, trial: int, value: float) -> None:
        """Nothing to do: a finished trial's rung records already count."""

    def restore(self, trial: int, reports: Sequence[tuple[int, Sequence[float]]], stopped: bool, value: float | None) -> None:
        """Put a journaled trial's reports back in the rungs, without deciding anything again
        (on resume, so the next arrivals are compared with everything recorded before)."""
        for epoch, values in reports:
            if epoch in self.records and not any(v != v for v in values):
                self.records[epoch][trial] = [float(v) for v in values]
        if stopped and reports:
            self.stopped[trial] = reports[-1][0]

    def state(self) -> dict[str, Any]:
        return {"rungs": self.rungs, "records": {r: dict(v) for r, v in self.records.items()}, "stopped": dict(self.stopped)}


class OptunaPrunerScheduler:
    """One objective: Optuna's pruner decides, on a mirror study fed with the per-epoch reports."""

    def __init__(self, direction: str, pruner: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction=direction, pruner=pruner)
        self.trials: dict[int, Any] = {}
        self.stopped: dict[int, int] = {}

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        t = self.trials.get(trial)
        if t is None:
            t = self.trials[trial] = self.study.ask()
        t.report(float(values[0]), step=epoch)
        if t.should_prune():
            self.stopped[trial] = epoch
            self.study.tell(t, state=__import__("optuna").trial.TrialState.PRUNED)
            return True
        return False

    def finish(self, trial: int, value: float) -> None:
        t = self.trials.get(trial)
        if t is not None and trial not in self.stopped:
            self.study.tell(t, float(value))

    def state(self) -> dict[str, Any]:
        return {"stopped": dict(self.stopped)}

    def restore(self, trial: int, reports: Sequence[tuple[int, Sequence[float]]], stopped: bool, value: float | None) -> None:
        """Replay a journaled trial into the mirror study (reports, then pruned or its value)."""
        import optuna

        t = self.trials[trial] = self.study.ask()
        for epoch, values in reports:
            t.report(float(values[0]), step=epoch)
        if stopped:
            self.stopped[trial] = reports[-1][0] if reports else 0
            self.study.tell(t, state=optuna.trial.TrialState.PRUNED)
        elif value is not None:
            self.study.tell(t, float(value))


PRUNERS = ("median", "sha", "hyperband", "percentile")


def make_scheduler(cfg: Any):
    """The config's ``scheduler`` block -> a scheduler object, or None when early stopping is off."""
    sc = cfg.scheduler
    if sc is None or sc.name == "none":
        return None
    if sc.name == "mo-asha":
        return MOASHA(cfg.directions, cfg.budget.epochs, sc.min_epochs, sc.reduction_factor, sc.tie_break)
    import optuna

    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=sc.startup_trials, n_warmup_steps=sc.min_epochs),
        "percentile": lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=sc.startup_trials, n_warmup_steps=sc.min_epochs),
        "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=sc.min_epochs, reduction_factor=sc.reduction_factor),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=sc.min_epochs, max_resource=cfg.budget.epochs, reduction_factor=sc.reduction_factor),
    }[sc.name]()
    return OptunaPrunerScheduler(cfg.directions[0], pruner)


class SchedulerBox:
    """What a Ray actor holds: the scheduler built from the config, in one process for all workers."""

    def __init__(self, cfg: Any) -> None:
        self.scheduler = make_scheduler(cfg)

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        return self.scheduler.report(trial, epoch, values)

    def finish(self, trial: int, value: float) -> None:
        self.scheduler.finish(trial, value)

    def state(self) -> dict[str, Any]:
        return self.scheduler.state()

    def restore(self, trial: int, reports: Sequence[tuple[int, Sequence[float]]], stopped: bool, value: float | None) -> None:
        self.scheduler.restore(trial, reports, stopped, value)


def call(scheduler: Any, method: str, *args: Any) -> Any:
    """Call a scheduler method whether it is a local object or a Ray actor handle."""
    fn = getattr(scheduler, method)
    if hasattr(fn, "remote"):
        import ray

        return ray.get(fn.remote(*args))
    return fn(*args)
