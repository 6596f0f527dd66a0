"""MLflow tracking: one parent run per search, one child run per trial, the front as artifacts.

We use ``MlflowClient`` (explicit run ids) rather than the fluent ``mlflow.start_run`` stack, so
child runs can be written in any order as results arrive, and the driver is the only writer
(workers never touch the store: SQLite does not like concurrent writers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(configured: str | None) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else MLflow 3's default local store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _param(value: Any) -> str:
    return str(value)[:6000]


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
        self.parent_id: str | None = None

    # -- parent ----------------------------------------------------------------------------
    def start_parent(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"abacus.role": "search", **tags})
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def attach_parent(self, run_id: str) -> None:
        self.parent_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)

    def log_parent_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self._log(self.parent_id, metrics=metrics, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), artifact_path)

    # -- children --------------------------------------------------------------------------
    def log_trial(self, number: int, arch: Mapping[str, Any], tags: Mapping[str, str], metrics: Mapping[str, float],
                  history: list[Mapping[str, float]], state: str, reason: str = "") -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:04d}",
            tags={"mlflow.parentRunId": self.parent_id, "abacus.role": "trial", "trial_number": str(number),
                  "state": state, **({"fail_reason": reason[:5000]} if reason else {}), **tags},
        )
        rid = run.info.run_id
        self._log(rid, params=arch, metrics=metrics)
        from mlflow.entities import Metric

        curve = [Metric(k, float(v), 0, int(row["epoch"])) for row in history for k, v in row.items() if k != "epoch"]
        for i in range(0, len(curve), 900):
            self.client.log_batch(rid, metrics=curve[i: i + 900])
        self.client.set_terminated(rid, status="FINISHED" if state == "complete" else "FAILED" if state == "fail" else "KILLED")
        return rid

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def _log(self, run_id: str | None, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        ps = [Param(k, _param(v)) for k, v in (params or {}).items()]
        ms = [Metric(k, float(v), 0, step) for k, v in (metrics or {}).items() if v is not None and v == v]
        for i in range(0, max(len(ps), len(ms), 1), 90):
            self.client.log_batch(run_id, metrics=ms[i: i + 90], params=ps[i: i + 90])
