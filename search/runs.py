"""Reading finished searches back from MLflow (for ``abacus compare`` and ``abacus export``).

The layout is the one ``search.tracking.Tracker`` writes: a parent run tagged
``abacus.role=search`` whose params are the flattened config (``objectives`` is the list of
``{name, direction}`` dicts as a Python literal), and one child run per trial tagged
``mlflow.parentRunId``, ``trial_number``, ``arch_id``, ``state`` (and ``pareto``), with the
architecture as params and metrics + cost as metrics.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class RunLookupError(ValueError):
    """A named experiment, run or run directory is missing or unusable; one line for the CLI."""


@dataclass
class SearchRecord:
    """One search as read back: its parent run, objectives and complete trials."""

    label: str
    source: str  # "experiment" or the run directory
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    objectives: list[tuple[str, str]]
    trials: list[dict[str, Any]] = field(default_factory=list)  # number, arch_id, arch, values, run_id, pareto
    tags: dict[str, str] = field(default_factory=dict)  # the parent run's tags (problem key, reference point)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    def values(self) -> np.ndarray:
        return np.array([[t["values"][n] for n in self.names] for t in self.trials], dtype=float).reshape(-1, len(self.objectives))


def check_store(uri: str) -> None:
    """Refuse a SQLite store whose file does not exist: MLflow would silently create an empty one
    in the current directory, and the user would see 'no experiment' instead of 'wrong place'."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if str(path) not in ("", ":memory:") and not path.is_file():
            raise RunLookupError(f"tracking store {uri!r}: expected an existing SQLite file, found none at {path.resolve()} "
                                 "(run from the search's directory or pass --tracking-uri)")


def client_for(uri: str):
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    check_store(uri)
    return MlflowClient(uri)


def search_all(client, experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None) -> list:
    """Every matching run, following page tokens (``search_runs`` returns at most one page)."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def parse_objectives(params: dict[str, str], where: str) -> list[tuple[str, str]]:
    """``[(name, direction), ...]`` from the parent run's ``objectives`` param."""
    raw = params.get("objectives")
    if raw is None:
        raise RunLookupError(f"{where}: expected an 'objectives' param on the search run, found none")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise RunLookupError(f"{where}: expected the 'objectives' param as a list of {{name, direction}}, found {raw[:120]!r}") from None
    try:
        return [(str(o["name"]), str(o["direction"])) for o in value]
    except (TypeError, KeyError):
        raise RunLookupError(f"{where}: expected the 'objectives' param as a list of {{name, direction}}, found {raw[:120]!r}") from None


def latest_search_run(client, experiment_id: str, name: str):
    """The most recently started parent run with status FINISHED."""
    runs = client.search_runs([experiment_id], filter_string="tags.`abacus.role` = 'search' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise RunLookupError(f"experiment {name!r}: expected a finished search run (tag abacus.role=search), found none")
    return runs[0]


def complete_trials(client, experiment_id: str, parent_run_id: str, objective_names: list[str]) -> list[dict[str, Any]]:
    """The parent's child runs whose trial state is ``complete``, with their objective values."""
    children = search_all(client, [experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.state = 'complete' and tags.`abacus.role` = 'trial'")
    trials = []
    for r in children:
        m = r.data.metrics
        if any(n not in m or m[n] != m[n] for n in objective_names):
            continue  # a complete trial always has its objectives; skip anything hand-edited
        tags = r.data.tags
        number = int(tags["trial_number"]) if tags.get("trial_number", "").lstrip("-").isdigit() else -1
        trials.append({"number": number, "arch_id": tags.get("arch_id", ""), "arch": dict(r.data.params),
                       "values": {n: float(m[n]) for n in objective_names}, "run_id": r.info.run_id,
                       "pareto": tags.get("pareto") == "true"})
    trials.sort(key=lambda t: (t["number"], t["run_id"]))
    return trials


def _locate_store(uri: str | None, run_dir: Path) -> str | None:
    """A run directory's recorded store. A relative SQLite path was relative to where the search
    ran; when it is not found from here, try the directory above ``runs/<name>`` (the default
    layout), so ``abacus compare some/where/runs/x`` works from anywhere."""
    if not uri or not uri.startswith("sqlite:///"):
        return uri
    rel = Path(uri[len("sqlite:///"):])
    if rel.is_absolute() or rel.is_file():
        return uri
    candidate = run_dir.resolve().parent.parent / rel
    return f"sqlite:///{candidate}" if candidate.is_file() else uri


def read_search(spec: str, tracking_uri: str | None) -> SearchRecord:
    """``spec`` is a run directory holding ``summary.json`` (its recorded parent run) or an MLflow
    experiment name (its latest finished search). ``tracking_uri`` overrides the store a run
    directory recorded; for names it is the store to look in (resolved like a search's)."""
    from search.tracking import resolve_tracking_uri

    path = Path(spec)
    if path.is_dir() and (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
            parent_id = summary["parent_run_id"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise RunLookupError(f"run directory {spec!r}: expected summary.json with parent_run_id, found {type(exc).__name__}: {exc}") from None
        uri = tracking_uri or _locate_store(summary.get("tracking_uri"), path) or resolve_tracking_uri(None)
        client = client_for(uri)
        try:
            parent = client.get_run(parent_id)
        except Exception:
            raise RunLookupError(f"run directory {spec!r}: expected its search run {parent_id} in {uri}, found none") from None
        label = summary.get("experiment") or path.name
        source = str(path)
    else:
        if path.is_dir():
            raise RunLookupError(f"run directory {spec!r}: expected a summary.json (written when a search ends), found none")
        uri = resolve_tracking_uri(tracking_uri)
        client = client_for(uri)
        exp = client.get_experiment_by_name(spec)
        if exp is None:
            known = sorted(e.name for e in client.search_experiments() if e.name not in ("Default", "abacus-compare"))
            raise RunLookupError(f"experiment {spec!r}: expected an MLflow experiment in {uri} or a run directory with summary.json, "
                                 f"found neither (experiments: {', '.join(known) or 'none'})")
        parent = latest_search_run(client, exp.experiment_id, spec)
        label, source = spec, "experiment"
    objectives = parse_objectives(parent.data.params, f"search run {parent.info.run_id} of {spec!r}")
    trials = complete_trials(client, parent.info.experiment_id, parent.info.run_id, [n for n, _ in objectives])
    return SearchRecord(label=label, source=source, tracking_uri=uri, experiment_id=parent.info.experiment_id,
                        parent_run_id=parent.info.run_id, objectives=objectives, trials=trials, tags=dict(parent.data.tags))
