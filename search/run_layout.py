"""How a search looks in MLflow's UI: experiment kind, run names, metric steps, the front table.

Pure helpers used by ``search.tracking.Tracker`` (kept apart so the layout is in one place and
testable without a store):

- the experiment is tagged ``mlflow.experimentKind = custom_model_development``: MLflow 3's UI
  opens an untagged experiment on its GenAI overview (traces, judges), not on the runs table;
- child runs are named ``<search>-trial-0012``: names stay unique when several searches share
  an experiment, so MLflow's compare views do not mix them up;
- a metric that has a per-epoch curve is logged once per epoch at step ``epoch + 1`` and its
  final value only when it differs from the last epoch's, at that same step; so a chart shows the
  curve alone, not the final value again at step 0 (the "spike" of an epoch-0 point);
- the front as a table (``pareto_front.json``, MLflow's ``log_table`` format) with, per member,
  the argument ``abacus export`` takes (``SEARCH:TRIAL``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
FRONT_TABLE = "pareto_front.json"


def trial_run_name(search: str | None, role: str, number: int) -> str:
    base = f"{role}-{number:04d}"
    return f"{search}-{base}" if search else base


def export_ref(search: str, trial: int) -> str:
    """What ``abacus export`` accepts for a trial of a search (see ``search.run_ref``)."""
    return f"{search}:{trial}"


def trial_metric_points(metrics: Mapping[str, float], history: Sequence[Mapping[str, float]]) -> list[tuple[str, float, int, int]]:
    """(key, value, step, timestamp offset) of one trial: curves at ``epoch + 1`` (no step-0
    spike), finals without a curve at step 0; a final that differs from its curve's last value
    (re-measured after training) is kept at the curve's end, one millisecond later."""
    out = []
    last: dict[str, tuple[int, float]] = {}
    for row in history:
        step = int(row["epoch"]) + 1
        for k, v in row.items():
            if k == "epoch" or v != v:
                continue
            out.append((k, float(v), step, 0))
            last[k] = (step, float(v))
    for k, v in metrics.items():
        if v is None or v != v:
            continue
        if k in last:
            step, final = last[k]
            if float(v) != final:
                out.append((k, float(v), step, 1))
        else:
            out.append((k, float(v), 0, 0))
    return out


def trial_metrics(metrics: Mapping[str, float], history: Sequence[Mapping[str, float]], timestamp_ms: int) -> list:
    """MLflow ``Metric`` entities of one trial (``trial_metric_points``)."""
    from mlflow.entities import Metric

    return [Metric(k, v, timestamp_ms + dt, step) for k, v, step, dt in trial_metric_points(metrics, history)]


def front_table(front_rows: Sequence[Mapping[str, Any]], names: Sequence[str], search: str):
    """The front as a pandas frame: numbers as numbers, one column per architecture dimension."""
    import pandas as pd

    rows = []
    for r in front_rows:
        row: dict[str, Any] = {"trial": int(r["trial"]), "export": export_ref(search, int(r["trial"])), "arch_id": r["arch_id"]}
        row.update({n: float(r["values"][n]) for n in names})
        row.update({k: (v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)) for k, v in r["arch"].items()})
        row["run_id"] = str(r.get("run_id", ""))
        rows.append(row)
    return pd.DataFrame(rows)
