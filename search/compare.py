"""``abacus compare EXP [EXP...]``: several searches' fronts on one plot and one reference point.

Hypervolumes are only comparable on one reference point, and a search records the point its
*problem* fixes (``search.problem``: cost-model worst over the space, declared quality bounds)
with a problem key on its parent run. Searches of one problem are compared on that recorded
point, so the hypervolumes here equal each parent's ``hypervolume_final`` in MLflow. Searches of
different problems (or recorded before problems were) are refused unless ``--ref`` fixes every
objective: abacus never puts different problems on one axis by itself.

The comparison is logged as one run of the ``abacus-compare`` experiment with one child run per
search; every child has the same metric keys (``hypervolume``, ``share_of_best``, ``front_size``,
``trials``) and a ``search`` param, so comparisons tabulate against each other in MLflow.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence

import numpy as np
import typer

from search.pareto import hypervolume, non_dominated_mask
from search.problem import TAG_METRIC, TAG_PROBLEM, reference_from_tags
from search.runs import RunLookupError, SearchRecord, read_search

COMPARE_EXPERIMENT = "abacus-compare"


def _unique_labels(records: Sequence[SearchRecord]) -> None:
    seen: dict[str, int] = {}
    for r in records:
        base = r.label
        if base in seen:
            seen[base] += 1
            r.label = f"{base}@{Path(r.source).name}" if r.source != "experiment" else f"{base}#{seen[base]}"
        else:
            seen[base] = 1


def _check_metric_identity(records: Sequence[SearchRecord]) -> None:
    """Refuse searches whose quality values were measured differently (another FID extractor):
    no reference point makes such values comparable, so ``--ref`` does not override this."""
    first = records[0]

    def identity(rec: SearchRecord) -> dict[str, str]:
        return {k[len(TAG_METRIC):]: v for k, v in rec.tags.items() if k.startswith(TAG_METRIC)}

    for r in records[1:]:
        a, b = identity(first), identity(r)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise RunLookupError(f"{key} differs: {first.label!r} measured with {a.get(key, 'none recorded')!r} but "
                                     f"{r.label!r} with {b.get(key, 'none recorded')!r}; their values are not comparable")


def _check_objectives(records: Sequence[SearchRecord]) -> None:
    _check_metric_identity(records)
    first = records[0]
    for r in records[1:]:
        if r.objectives != first.objectives:
            def fmt(rec: SearchRecord) -> str:
                return ", ".join(f"{n} ({d})" for n, d in rec.objectives)

            raise RunLookupError(f"objectives differ: {first.label!r} has {fmt(first)} but {r.label!r} has {fmt(r)}")


def parse_ref(items: Sequence[str]) -> dict[str, float]:
    """``["energy_mj=5", ...]`` -> ``{"energy_mj": 5.0}`` (names are checked against the objectives later)."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise RunLookupError(f"--ref: expected OBJECTIVE=VALUE, found {item!r}")
        try:
            out[key] = float(val)
        except ValueError:
            raise RunLookupError(f"--ref {key}: expected a number, found {val!r}") from None
    return out


def _default_out() -> Path:
    return Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"


def compare(experiments: Sequence[str], tracking_uri: str | None = None, out: Path | None = None, *,
            reference: Mapping[str, float] | None = None, log_to_mlflow: bool = True) -> dict[str, Any]:
    """Read each search, compute fronts and hypervolumes on one reference point, write
    ``compare.png``, ``compare.html``, ``hypervolume.csv``, ``fronts.csv`` and ``compare.json``
    into ``out`` and log them as a run of the ``abacus-compare`` MLflow experiment."""
    from search.tracking import resolve_tracking_uri

    if not experiments:
        raise RunLookupError("EXP: expected at least one experiment name or run directory, found none")
    records = [read_search(e, tracking_uri) for e in experiments]
    _unique_labels(records)
    _check_objectives(records)
    names, dirs = records[0].names, records[0].directions
    empty = [r.label for r in records if not r.trials]
    if len(empty) == len(records):
        raise RunLookupError(f"experiments {', '.join(map(repr, empty))}: expected complete trials, found none")
    fixed = dict(reference or {})
    unknown = [k for k in fixed if k not in names]
    if unknown:
        raise RunLookupError(f"--ref: expected objectives among {', '.join(names)}, found {', '.join(unknown)}")
    problem, recorded = shared_problem(records, names, fixed)
    ref = np.array([fixed.get(n, recorded.get(n, np.nan) if recorded else np.nan) for n in names], dtype=float)

    rows: list[dict[str, Any]] = []
    for r in records:
        values = r.values()
        mask = non_dominated_mask(values, dirs) if len(values) else np.zeros(0, dtype=bool)
        hv = hypervolume(values, dirs, ref) if len(values) else 0.0
        front = [t for t, m in zip(r.trials, mask) if m]
        rows.append({"experiment": r.label, "source": r.source, "tracking_uri": r.tracking_uri, "parent_run_id": r.parent_run_id,
                     "trials": len(r.trials), "front_size": len(front), "hypervolume": float(hv),
                     "front": sorted(({"trial": t["number"], "arch_id": t["arch_id"], "values": t["values"], "run_id": t["run_id"],
                                       "arch": t["arch"]} for t in front), key=lambda t: t["values"][names[0]]),
                     "_values": values, "_mask": mask, "_record": r})
    best = max(row["hypervolume"] for row in rows)
    for row in rows:
        row["share_of_best"] = row["hypervolume"] / best if best > 0 else 0.0

    out = Path(out) if out is not None else _default_out()
    out.mkdir(parents=True, exist_ok=True)
    title = f"{' vs '.join(r.label for r in records)}"
    _write_tables(out, rows, names, problem)
    _plot_png(out / "compare.png", rows, names, dirs, title, ref)
    from search.html_report import hover_text, write_overlay_html

    ref_text = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, ref))
    hv_text = "; ".join(f"{row['experiment']}: {row['hypervolume']:.6g} ({100 * row['share_of_best']:.1f}%)" for row in rows)
    write_overlay_html(out / "compare.html",
                       [{"label": f"{row['experiment']} (HV {row['hypervolume']:.4g})", "values": row["_values"], "front_mask": row["_mask"],
                         "hover_texts": [f"{row['experiment']}<br>" + hover_text(t["number"], t["arch_id"], t["arch"], t["values"])
                                         for t in row["_record"].trials]} for row in rows],
                       names, dirs, f"{title}<br><sup>hypervolume {hv_text}<br>reference point {ref_text}"
                       f"{f' (problem {problem})' if problem else ' (given with --ref)'}</sup>", reference=ref)
    result: dict[str, Any] = {
        "objectives": [{"name": n, "direction": d} for n, d in zip(names, dirs)],
        "problem": problem,
        "reference_point": {n: float(v) for n, v in zip(names, ref)},
        "experiments": [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
        "out_dir": str(out),
        "compare_run_id": None,
        "tracking_uri": None,
    }
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    if log_to_mlflow:
        uri = tracking_uri or (records[0].tracking_uri if all(r.source != "experiment" for r in records) else resolve_tracking_uri(None))
        result["compare_run_id"] = _log_run(uri, records, rows, result["reference_point"], out, problem)
        result["tracking_uri"] = uri
        (out / "compare.json").write_text(json.dumps(result, indent=2))
    return result


def shared_problem(records: Sequence[SearchRecord], names: Sequence[str], fixed: Mapping[str, float]) -> tuple[str | None, dict[str, float] | None]:
    """The problem key and recorded reference point all ``records`` share; without one, ``--ref``
    must fix every objective (then the key is ``None``)."""
    keys = {r.label: r.tags.get(TAG_PROBLEM) for r in records}
    if len(set(keys.values())) == 1 and None not in keys.values():
        recorded = reference_from_tags(records[0].tags, names)
        if recorded is not None:
            return next(iter(keys.values())), recorded
    if all(n in fixed for n in names):
        return None, None
    missing = [label for label, k in keys.items() if k is None]
    why = (f"{', '.join(map(repr, missing))} recorded no problem key (searched before abacus recorded one)" if missing else
           "they are different problems (" + ", ".join(f"{label!r}: {k}" for label, k in keys.items()) + "; see problem.json in each run)")
    raise RunLookupError(f"EXP: expected searches of one problem, whose hypervolumes share a reference point, but {why}; "
                         f"to compare them anyway on a point you choose, pass --ref for every objective ({', '.join(f'{n}=...' for n in names)})")


def _write_tables(out: Path, rows: list[dict], names: Sequence[str], problem: str | None) -> None:
    """Numbers as plain numbers (``float``/``int``), so spreadsheets and pandas read them as such."""
    with open(out / "hypervolume.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["experiment", "source", "parent_run_id", "problem", "trials", "front_size", "hypervolume", "share_of_best"])
        for row in rows:
            w.writerow([row["experiment"], row["source"], row["parent_run_id"], problem or "", int(row["trials"]), int(row["front_size"]),
                        float(row["hypervolume"]), float(row["share_of_best"])])
    with open(out / "fronts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["experiment", "trial", "arch_id", *names, "run_id", "arch"])
        for row in rows:
            for t in row["front"]:
                w.writerow([row["experiment"], int(t["trial"]), t["arch_id"], *[float(t["values"][n]) for n in names], t["run_id"],
                            json.dumps(t["arch"], sort_keys=True)])


def _plot_png(path: Path, rows: list[dict], names: Sequence[str], dirs: Sequence[str], title: str, ref: np.ndarray) -> None:
    """Each search in its own colour: all trials faint, the front bold and joined as a staircase
    (first objective vertical, second horizontal, as in ``pareto.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.html_report import PALETTE

    fig, ax = plt.subplots(figsize=(6.5, 4.8), dpi=110)
    for i, row in enumerate(rows):
        v, m = row["_values"], row["_mask"]
        if not len(v):
            continue
        c = PALETTE[i % len(PALETTE)]
        x = v[:, 1] if v.shape[1] > 1 else np.arange(len(v), dtype=float)
        y = v[:, 0]
        ax.scatter(x[~m], y[~m], s=12, c=c, alpha=0.25)
        fx, fy = x[m], y[m]
        order = np.argsort(fx if len(dirs) < 2 or dirs[1] == "minimize" else -fx)
        ax.step(fx[order], fy[order], where="post", c=c, lw=1.2, alpha=0.8)
        ax.scatter(fx, fy, s=28, c=c, label=f"{row['experiment']} (HV {row['hypervolume']:.4g})", zorder=3)
    if len(names) > 1:
        ax.scatter([ref[1]], [ref[0]], marker="x", s=40, c="black", label="reference point", zorder=4)
    ax.set_xlabel(f"{names[1]} ({dirs[1]})" if len(names) > 1 else "trial")
    ax.set_ylabel(f"{names[0]} ({dirs[0]})")
    ax.set_title(title + (" (first two objectives)" if len(names) > 2 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _log_run(uri: str, records: Sequence[SearchRecord], rows: list[dict], ref: Mapping[str, float], out: Path, problem: str | None) -> str:
    """One parent run per comparison (params, artifacts) and one child per search, each child with
    the same param and metric keys, so any number of comparisons tabulate in MLflow's runs table."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from search.run_layout import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    client = MlflowClient(uri)  # the store was read already, so it exists
    exp = client.get_experiment_by_name(COMPARE_EXPERIMENT)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(COMPARE_EXPERIMENT, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    name = " vs ".join(r.label for r in records)[:250]
    common = {"problem": problem or "given with --ref", "objectives": json.dumps([{"name": n, "direction": d} for n, d in records[0].objectives]),
              **{f"reference.{n}": repr(float(v)) for n, v in ref.items()}}
    run = client.create_run(exp_id, run_name=name, tags={"abacus.role": "compare", **({"abacus.problem": problem} if problem else {})})
    rid = run.info.run_id
    client.log_batch(rid, params=[Param("searches", json.dumps([r.label for r in records])[:6000])] + [Param(k, v) for k, v in common.items()])
    now = int(time.time() * 1000)
    for r, row in zip(records, rows):
        child = client.create_run(exp_id, run_name=f"{name[:200]} / {r.label}"[:250],
                                  tags={"mlflow.parentRunId": rid, "abacus.role": "compare-search"})
        params = [Param("search", r.label), Param("parent_run_id", r.parent_run_id)] + [Param(k, v) for k, v in common.items()]
        metrics = [Metric("hypervolume", float(row["hypervolume"]), now, 0), Metric("share_of_best", float(row["share_of_best"]), now, 0),
                   Metric("front_size", float(row["front_size"]), now, 0), Metric("trials", float(row["trials"]), now, 0)]
        client.log_batch(child.info.run_id, metrics=metrics, params=params)
        client.set_terminated(child.info.run_id, "FINISHED")
    for fname in ("compare.png", "compare.html", "hypervolume.csv", "fronts.csv", "compare.json"):
        client.log_artifact(rid, str(out / fname))
    client.set_terminated(rid, "FINISHED")
    return rid


def compare_table(result: Mapping[str, Any]):
    from rich.table import Table

    ref = ", ".join(f"{k}={v:.6g}" for k, v in result["reference_point"].items())
    where = f"problem {result['problem']}" if result.get("problem") else "given with --ref"
    table = Table(title=f"hypervolume on one reference point ({ref}; {where})")
    for col, just in (("experiment", "left"), ("trials", "right"), ("front", "right"), ("hypervolume", "right"), ("share of best", "right")):
        table.add_column(col, justify=just)
    for row in result["experiments"]:
        table.add_row(row["experiment"], str(row["trials"]), str(row["front_size"]), f"{row['hypervolume']:.6g}", f"{100 * row['share_of_best']:.1f}%")
    return table


def compare_command(
    experiments: Annotated[list[str], typer.Argument(help="MLflow experiment names or run directories (with summary.json)")],
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="where the plots and tables go (default runs/compare-<time>)")] = None,
    ref: Annotated[list[str], typer.Option("--ref", help="fix the reference point of one objective: --ref energy_mj=5 (repeatable; every objective to compare searches of different problems)")] = [],  # noqa: B006
) -> None:
    """Overlay the Pareto fronts of several searches and compare their hypervolumes on one reference point."""
    from rich.console import Console

    try:
        fixed = parse_ref(ref) if ref else None
        result = compare(experiments, tracking_uri, out, reference=fixed)
    except RunLookupError as exc:
        typer.echo(f"abacus: error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(compare_table(result))
    console.print(f"plots and tables: {result['out_dir']}   MLflow: experiment {COMPARE_EXPERIMENT}, run {result['compare_run_id']} ({result['tracking_uri']})")
