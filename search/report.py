"""Front artifacts and the terminal table: ``pareto.csv``, ``pareto.png`` and ``summary.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def test_columns(front: Sequence[dict], objective_names: Sequence[str]) -> list[tuple[str, str]]:
    """(objective, column name) of the held-out values to show beside the search values: the quality
    objectives' test counterparts (``val_accuracy`` -> ``test_accuracy``), when a retrain measured them."""
    from search.retrain import TEST_METRIC

    measured = {k for row in front for k in (row.get("test_values") or {})}
    return [(n, TEST_METRIC[n]) for n in objective_names if n in TEST_METRIC and TEST_METRIC[n] in measured]


def write_pareto_csv(path: Path, front: Sequence[dict], objective_names: Sequence[str]) -> None:
    """One row per front member: the search values (``selected_on`` = ``search``: what chose the
    front), the test values of the retrain (mean, std over ``test_seeds`` seeds), the architecture."""
    labels: list[str] = []
    for row in front:
        for k in row["arch"]:
            if k not in labels:
                labels.append(k)
    tests = test_columns(front, objective_names)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", "arch_id", "selected_on", *objective_names, *[c for _, c in tests], *[f"{c}_std" for _, c in tests],
                    *(["test_seeds"] if tests else []), *labels, "run_id"])
        for row in front:
            tv, ts = row.get("test_values") or {}, row.get("test_std") or {}
            w.writerow([row["trial"], row["arch_id"], "search", *[row["values"][n] for n in objective_names],
                        *[tv.get(c, "") for _, c in tests], *[ts.get(c, "") for _, c in tests],
                        *([row.get("test_seeds", 0)] if tests else []),
                        *[row["arch"].get(k, "") for k in labels], row.get("run_id", "")])


def plot_pareto_png(path: Path, values: np.ndarray, front_mask: np.ndarray, objective_names: Sequence[str],
                    directions: Sequence[str], title: str) -> None:
    """All complete trials in grey, the front in colour joined as a staircase (first two objectives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    x, y = values[:, 1] if values.shape[1] > 1 else np.arange(len(values)), values[:, 0]
    ax.scatter(x[~front_mask], y[~front_mask], s=18, c="#bbbbbb", label="trials")
    fx, fy = x[front_mask], y[front_mask]
    order = np.argsort(fx)
    ax.step(fx[order], fy[order], where="post", c="#d62728", lw=1, alpha=0.6)
    ax.scatter(fx, fy, s=30, c="#d62728", label="Pareto front", zorder=3)
    xlabel = objective_names[1] if len(objective_names) > 1 else "trial"
    ax.set_xlabel(f"{xlabel} ({directions[1]})" if len(directions) > 1 else xlabel)
    ax.set_ylabel(f"{objective_names[0]} ({directions[0]})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write-then-rename, so a reader never sees a half-written summary."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default))
    tmp.replace(path)


def _default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def front_table(front: Sequence[dict], objective_names: Sequence[str], title: str, caption: str = "", search: str | None = None):
    """The front, search values first (what selected it), then the held-out test values if measured;
    ``search`` (the MLflow experiment) adds the column of what ``abacus export`` takes."""
    from rich.table import Table

    table = Table(title=title, caption=caption or None)
    table.add_column("trial", justify="right")
    if search:
        table.add_column("abacus export", no_wrap=True)
    table.add_column("arch id")
    tests = test_columns(front, objective_names)
    for n in objective_names:
        table.add_column(f"{n} (search)" if tests else n, justify="right")
    for _, c in tests:
        table.add_column(f"{c} (retrain)", justify="right")
    # Only the dimensions on which the front's members differ: what the trade-off is made of
    # (every member's full architecture is in summary.json and pareto.csv).
    labels = list(dict.fromkeys(k for row in front for k in row["arch"]))
    if len(front) > 1:
        labels = [k for k in labels if len({repr(row["arch"].get(k)) for row in front}) > 1]
    table.add_column("architecture (where front members differ)")
    for row in front:
        arch = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in row["arch"].items() if k in labels)
        tv, ts = row.get("test_values") or {}, row.get("test_std") or {}
        test_cells = [(f"{tv[c]:.4g}" + (f" ± {ts[c]:.2g}" if row.get("test_seeds", 0) > 1 else "")) if c in tv else "-" for _, c in tests]
        table.add_row(str(row["trial"]), *([f"{search}:{row['trial']}"] if search else []), row["arch_id"], *[f"{row['values'][n]:.4g}" for n in objective_names], *test_cells, arch)
    return table
