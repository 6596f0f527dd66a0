"""The ``retrain`` block: every front member trained again from scratch and scored on the test split.

Why: the front is *selected* on validation values, so those values are optimistically biased (the
winner of many noisy comparisons). Each member is trained again, with the retrain budget, on the
same split as the search (train, or train + validation with ``train_on_val``), with ``seeds``
different seeds, and scored once on the held-out test split that no trial ever saw. Those test
values are reported beside the search values in the front table, ``pareto.csv`` and
``summary.json``; the front itself stays the one selected on the search values.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Sequence

# the held-out counterpart of a quality objective; other objectives (cost, params) are properties
# of the architecture and are taken from the retrain run as they are
TEST_METRIC = {"val_accuracy": "test_accuracy", "best_val_accuracy": "test_accuracy", "val_loss": "test_loss"}
SEED_STRIDE = 100_003  # seeds of one member's runs: far apart, and never another member's


def retrain_seeds(cfg: Any, number: int) -> list[int]:
    """The seeds of trial ``number``'s retrain runs (the first is ``seed + seed_offset + number``)."""
    rt = cfg.retrain
    return [cfg.seed + rt.seed_offset + number + SEED_STRIDE * k for k in range(int(getattr(rt, "seeds", 1)))]


def test_values(metrics: dict[str, float], objectives: Sequence[str]) -> dict[str, float]:
    """The objectives as measured in a retrain run, quality objectives by their test counterpart
    (``{"test_accuracy": ..., "energy_mj": ...}`` for objectives val_accuracy and energy_mj)."""
    out = {}
    for n in objectives:
        key = TEST_METRIC.get(n, n)
        if key in metrics and metrics[key] == metrics[key]:
            out[key] = float(metrics[key])
    return out


def retrain_front(engine: Any, executor: Any) -> list[dict[str, Any]]:
    """Run every (front member, seed) on ``executor``; one ``retrain`` MLflow child run each.

    Each outcome is journaled (study attribute ``retrain.<trial>.<seed>``) before its run is
    logged, so a resume after a crash never trains a (member, seed) twice, and a run already in
    the store is never logged again."""
    from search.engine import COST_KEYS

    cfg = engine.cfg
    rt = cfg.retrain
    front, _, _ = engine._front()
    journaled = engine.study.user_attrs
    logged = engine.tracker.child_runs("retrain", extra_key="retrain_seed")
    jobs: dict[int, tuple[Any, dict, int, int]] = {}
    out = []

    def done(rec: Any, seed: int, o: dict[str, Any], rid: Any) -> None:
        measured = test_values(o["metrics"], cfg.objective_names)
        out.append({"trial": rec.number, "arch_id": rec.arch_id, "seed": seed, "state": o["state"], "values": o["values"],
                    "test_values": measured if o["state"] == "complete" else {}, "search_values": rec.values,
                    "run_id": rid, "reason": o["reason"]})

    for rec in front:
        cost = {k: v for k, v in rec.metrics.items() if k in COST_KEYS}
        for k, seed in enumerate(retrain_seeds(cfg, rec.number)):
            o = journaled.get(f"retrain.{rec.number}.{seed}")
            if o is not None:  # retrained before a crash: reuse its run, or log it now from the journal
                where = engine.out / "retrain" / str(rec.number) / f"seed{seed}"
                done(rec, seed, o, logged.get((rec.number, str(seed))) or engine.tracker.submit(_log_run, engine, rec.number, o, where))
                continue
            job = len(jobs)  # the spec's number identifies the job: results of one member's seeds differ only by it
            spec = dataclasses.replace(engine._spec(rec.number, rec.arch, cost), number=job, epochs=rt.epochs, scheduler=None,
                                       seed=seed, lr=rt.lr or cfg.evaluator.lr, test=True,
                                       train_on_val=bool(getattr(rt, "train_on_val", False)))
            jobs[job] = (rec, cost, k, seed)
            executor.submit(spec)
    while executor.in_flight:
        result = executor.wait_one()
        rec, cost, k, seed = jobs[result.number]
        o = engine._outcome(rec.arch, rec.arch_id, cost, result)
        o["tags"]["retrain_seed"] = str(seed)
        measured = test_values(o["metrics"], cfg.objective_names)
        shown = "  ".join(f"{k}={v:.4g}" for k, v in measured.items() if k.startswith("test_"))
        engine.console.print(f"retrained trial {rec.number} (seed {seed}): {o['state']}" + (f"  {shown}" if shown else "")
                             + (f" ({o['reason']})" if o["reason"] else ""))
        where = engine.out / "retrain" / str(rec.number) / f"seed{seed}"
        if result.artifacts:
            from search.export import unpack_trial_artifacts

            unpack_trial_artifacts(result.artifacts, where)
        engine.study.set_user_attr(f"retrain.{rec.number}.{seed}", o)
        engine.journal.flush()  # the outcome is on disk before its run is written
        done(rec, seed, o, engine.tracker.submit(_log_run, engine, rec.number, o, where))
    return sorted(out, key=lambda r: (r["trial"], r["seed"]))


def _log_run(engine: Any, number: int, o: dict[str, Any], where: Any) -> str:
    """On the tracker's writer thread: the retrain child run, then its weights as artifacts."""
    # the artifacts go in before the run is terminated: a RUNNING run is one a crash cut short
    return engine.tracker.log_trial(number, o["arch"], o["tags"], o["metrics"], o["history"], o["state"], o["reason"],
                                    role="retrain", artifact_dir=where, start_ms=o.get("start_ms"), end_ms=o.get("end_ms"))


def attach_test_values(front_rows: list[dict[str, Any]], retrained: list[dict[str, Any]], objectives: Sequence[str]) -> None:
    """Add ``test_values`` (mean over seeds), ``test_std`` and ``test_seeds`` to each front row."""
    for row in front_rows:
        runs = [r["test_values"] for r in retrained if r["trial"] == row["trial"] and r["state"] == "complete" and r.get("test_values")]
        row["test_seeds"] = len(runs)
        row["test_values"], row["test_std"], row["test_per_seed"] = {}, {}, {}
        for key in dict.fromkeys(TEST_METRIC.get(n, n) for n in objectives):
            vals = [r[key] for r in runs if key in r]
            if vals:
                row["test_values"][key] = statistics.fmean(vals)
                row["test_std"][key] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row["test_per_seed"][key] = vals


def selection_note(cfg: Any, front_rows: list[dict[str, Any]]) -> str:
    """Which values selected the front and where the test values come from, in one sentence."""
    note = "front selected on the search's validation values"
    if cfg.retrain is None:
        return note + "; no test values (add a 'retrain' block to score the front on the held-out test split)"
    seeds = max((r.get("test_seeds", 0) for r in front_rows), default=0)
    if not any(r.get("test_values") for r in front_rows):
        return note + "; the retrain produced no test values (does the data set have a test split?)"
    base = "train+val" if getattr(cfg.retrain, "train_on_val", False) else "train"
    return note + f"; test values: mean of {seeds} retrain seed(s), {cfg.retrain.epochs} epochs on {base}, held-out test split"
