"""MLflow tracking: one parent run per search, one child run per trial, the front as artifacts.

We use ``MlflowClient`` (explicit run ids) rather than the fluent ``mlflow.start_run`` stack, so
child runs can be written in any order as results arrive, and the driver is the only writer
(workers never touch the store: SQLite does not like concurrent writers).

Trial child runs, their ``pareto`` tags and the live hypervolume go through ``self.batch``
(``search.tracking_batch.BatchWriter``: many runs per transaction on a SQL store, a few
concurrent calls on a tracking server). Everything else (the parent run, artifacts, retrained
runs) is written by one background thread in submission order (``submit``); ``flush()`` waits
for both and returns how long it waited.

Tracking URIs: ``sqlite:///mlflow.db`` (default, zero set-up), a database URI
(``postgresql://user@host/db``) written directly, or a tracking server ``http://host:5000``
(what a cluster runs: ``mlflow server --backend-store-uri postgresql://...``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from search.states import TrialState

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# No network at run time: MLflow 3's usage telemetry posts to a remote endpoint (and its exit
# hook waits for it); a user who wants it can set the variable to "false".
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def resolve_tracking_uri(configured: str | None) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else MLflow 3's default local store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _param(value: Any) -> str:
    return str(value)[:6000]


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, search_name: str | None = None) -> None:
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        from search.run_layout import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:  # the kind makes MLflow 3's UI open on the runs, not on its GenAI overview
            self.experiment_id = self.client.create_experiment(experiment, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            self.experiment_id = exp.experiment_id
            if EXPERIMENT_KIND_TAG not in exp.tags:
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self.search_name = search_name
        self.parent_id: str | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abacus-mlflow")
        self._pending: list[Future] = []
        self.batch = None  # the BatchWriter of trial child runs, once the parent run is known

    def _start_batch(self) -> None:
        from search.tracking_batch import BatchWriter

        self.batch = BatchWriter(self.client, self.experiment_id, self.parent_id)

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` on the writer thread (in order); its errors surface at ``flush``."""
        fut = self._writer.submit(fn, *args)
        self._pending.append(fut)
        return fut

    def flush(self, timeout: float | None = None) -> float:
        """Wait for every queued write (child runs first); returns the seconds waited."""
        t0 = time.perf_counter()
        if self.batch is not None:
            self.batch.flush(timeout)
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()
        return time.perf_counter() - t0

    def close(self) -> None:
        """Stop the writer threads (after ``flush``)."""
        if self.batch is not None:
            self.batch.close()
        self._writer.shutdown(wait=True)

    # -- parent ----------------------------------------------------------------------------
    def start_parent(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"abacus.role": "search", **tags})
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        self._start_batch()
        return self.parent_id

    def attach_parent(self, run_id: str) -> None:
        self.parent_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        self._start_batch()

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)

    def log_parent_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self._log(self.parent_id, metrics=metrics, step=step)

    def log_parent_series(self, key: str, points: list[tuple[int, float]]) -> None:
        """A metric curve on the parent run (step, value), in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log(self.parent_id, extra_metrics=[Metric(key, float(v), now, int(step)) for step, v in points])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), artifact_path)

    def log_front_table(self, front_rows: list[Mapping[str, Any]], names: list[str]) -> None:
        """The front as an MLflow table artifact on the parent (the UI shows it as a table)."""
        from search.run_layout import FRONT_TABLE, front_table

        self.client.log_table(self.parent_id, front_table(front_rows, names, self.search_name or ""), FRONT_TABLE)

    # -- children --------------------------------------------------------------------------
    def log_trial(self, number: int, arch: Mapping[str, Any], tags: Mapping[str, str], metrics: Mapping[str, float],
                  history: list[Mapping[str, float]], state: str, reason: str = "", role: str = "trial",
                  artifact_dir: str | Path | None = None, start_ms: int | None = None, end_ms: int | None = None) -> str:
        """A child run: ``role="trial"`` for a search trial (tag ``trial_number``), ``"retrain"`` for
        a front member trained again from scratch (tag ``retrain_of``). ``start_ms``/``end_ms``
        are when the trial really ran (the run is created after it ended). The run is terminated
        last, after its artifacts: a run still RUNNING in the store is one a crash cut short."""
        from search.run_layout import trial_metrics, trial_run_name

        number_tag = "trial_number" if role == "trial" else "retrain_of"
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_ms,
            run_name=trial_run_name(self.search_name, role, number),
            tags={"mlflow.parentRunId": self.parent_id, "abacus.role": role, number_tag: str(number),
                  "state": state, **({"fail_reason": reason[:5000]} if reason else {}), **tags},
        )
        rid = run.info.run_id
        self._log(rid, params=arch, extra_metrics=trial_metrics(metrics, history, end_ms or int(time.time() * 1000)))
        if artifact_dir is not None and Path(artifact_dir).is_dir():
            self.client.log_artifacts(rid, str(artifact_dir))
        self.client.set_terminated(rid, status=TrialState(state).mlflow_status, end_time=end_ms)
        return rid

    def set_tag(self, run_id: str | Future, key: str, value: str) -> None:
        self.client.set_tag(run_id.result() if isinstance(run_id, Future) else run_id, key, value)

    def child_runs(self, role: str = "trial", extra_key: str | None = None) -> dict[Any, str]:
        """trial number (or ``(number, tags[extra_key])``, e.g. a retrain's seed) -> run id of the
        complete child runs of ``role`` already in the store (for resume). A child run still RUNNING was cut short by a crash (its params, metrics or
        weights may be missing): it is deleted here, and the caller logs it again, whole, from
        the journal, so no trial ends up with two runs or a hollow one."""
        number_tag = "trial_number" if role == "trial" else "retrain_of"
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}'", max_results=50_000)
        found: dict[int, str] = {}
        for r in runs:
            tags = r.data.tags
            if number_tag not in tags or tags.get("abacus.role", "trial") != role:
                continue
            if r.info.status == "RUNNING":
                self.client.delete_run(r.info.run_id)
                continue
            number = int(tags[number_tag])
            found[number if extra_key is None else (number, tags.get(extra_key, ""))] = r.info.run_id
        return found

    def metric_steps(self, key: str) -> set[int]:
        """Steps of a parent-run metric already in the store (so a resume does not log them twice)."""
        return {m.step for m in self.client.get_metric_history(self.parent_id, key)}

    def _log(self, run_id: str | None, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
             step: int = 0, extra_metrics: list | None = None) -> None:
        """As few ``log_batch`` calls as MLflow's limits allow (100 params, 1000 entities each)."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(k, _param(v)) for k, v in (params or {}).items()]
        ms = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if v is not None and v == v] + list(extra_metrics or [])
        while ps or ms:
            p_chunk, ps = ps[:100], ps[100:]
            m_chunk, ms = ms[: 1000 - len(p_chunk)], ms[1000 - len(p_chunk):]
            self.client.log_batch(run_id, metrics=m_chunk, params=p_chunk)
