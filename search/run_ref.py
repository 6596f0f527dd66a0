"""What ``abacus export`` accepts for a trial, resolved to its MLflow run id.

- ``SEARCH:TRIAL``: a trial number of a search, the search named by its MLflow experiment (its
  latest finished search) or its run directory (``runs/tiny:3``); the front table prints these;
- a run id, or an unambiguous prefix of one (6 characters or more, as the UI shows them);
- an architecture id (the ``arch_id`` tag): the trained trial of that architecture, when there is
  exactly one.
Anything else, or an ambiguous reference, is a one-line ``RunLookupError`` naming what matched.
"""

from __future__ import annotations

import re
from pathlib import Path

from search.runs import RunLookupError, latest_search_run, search_all

RUN_ID = re.compile(r"[0-9a-f]{32}")
MIN_PREFIX = 6


def _parent_of(client, search: str, tracking_uri: str):
    import json

    path = Path(search)
    if path.is_dir() and (path / "summary.json").is_file():
        try:
            return client.get_run(json.loads((path / "summary.json").read_text())["parent_run_id"])
        except Exception:
            raise RunLookupError(f"{search}: expected its search run in {tracking_uri}, found none") from None
    exp = client.get_experiment_by_name(search)
    if exp is None:
        raise RunLookupError(f"SEARCH:TRIAL: expected an MLflow experiment or a run directory named {search!r} in {tracking_uri}, found neither")
    return latest_search_run(client, exp.experiment_id, search)


def _describe(runs) -> str:
    return ", ".join(f"{r.info.run_id[:8]} (trial {r.data.tags.get('trial_number', '?')}, {r.data.tags.get('state', '?')})" for r in runs[:6])


def resolve_trial(client, ref: str, tracking_uri: str) -> str:
    """The run id of the trial ``ref`` names (see the module docstring)."""
    ref = ref.strip()
    search, sep, trial = ref.rpartition(":")
    if sep and search:
        if not trial.isdigit():
            raise RunLookupError(f"SEARCH:TRIAL: expected a trial number after ':', found {trial!r}")
        parent = _parent_of(client, search, tracking_uri)
        runs = search_all(client, [parent.info.experiment_id],
                          f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.trial_number = '{int(trial)}' and tags.`abacus.role` = 'trial'")
        if not runs:
            raise RunLookupError(f"{ref}: expected trial {int(trial)} in search {parent.info.run_id} of {search!r}, found none")
        return runs[0].info.run_id
    if RUN_ID.fullmatch(ref):
        return ref
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        raise RunLookupError(f"RUN: expected a trial in {tracking_uri}, found no experiments")
    by_arch = search_all(client, experiments, f"tags.arch_id = '{ref}' and tags.`abacus.role` = 'trial'") if re.fullmatch(r"[\w.-]+", ref) else []
    trained = [r for r in by_arch if r.data.tags.get("state") == "complete"]
    if len(trained) == 1:
        return trained[0].info.run_id
    if len(trained) > 1:
        raise RunLookupError(f"{ref}: expected one trained trial of that architecture, found {len(trained)}: {_describe(trained)}; pass SEARCH:TRIAL or a run id")
    if len(ref) >= MIN_PREFIX and re.fullmatch(r"[0-9a-f]+", ref):
        hits = [r for r in search_all(client, experiments, "tags.`abacus.role` = 'trial'") if r.info.run_id.startswith(ref)]
        if len(hits) == 1:
            return hits[0].info.run_id
        if len(hits) > 1:
            raise RunLookupError(f"{ref}: expected a run id prefix of one trial, found {len(hits)}: {_describe(hits)}")
    raise RunLookupError(f"{ref}: expected SEARCH:TRIAL, a trial's run id (or a prefix of {MIN_PREFIX}+ characters) or an arch id, "
                         f"found no such trial in {tracking_uri}")
