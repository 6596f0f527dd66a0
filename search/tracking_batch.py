"""Child runs written in batches on a background thread, so MLflow keeps up with fast trials.

Why: through ``MlflowClient`` one child run is three store operations (create, ``log_batch``,
terminate), ~20 ms of SQLAlchemy work on a SQL store (measured: 23 ms per run on SQLite, CPU
in MLflow's ORM, not the disk), and each ``pareto`` tag change one more. At 10,000 trials that
is minutes behind the search and steals the driver's GIL meanwhile. The writer here collects
what arrived since its last round and writes it together:

- **SQL stores** (``sqlite:///``, ``postgresql://``, ``mysql://`` tracking URIs): every run of
  a round, with its tags, params, metrics, per-epoch curves and ``latest_metrics`` rows, goes in
  one transaction as multi-row inserts into the tables of the installed MLflow's own ORM models
  (``mlflow.store.tracking.dbmodels.models``). MLflow has no public multi-run write; this is the
  same schema its ``SqlAlchemyStore`` writes (we compute ``latest_metrics`` as it does: highest
  step, then timestamp, then value), and the tests read every run back through ``MlflowClient``.
  If the installed MLflow's tables lack a column we write, the writer falls back to the client.
- **A tracking server** (``http://``/``https://``): the REST API has no multi-run call either,
  so runs go through ``MlflowClient`` on a few threads at once (one run's calls stay in order),
  which a server backed by PostgreSQL absorbs; the driver never waits on a round trip.

``pareto`` tag changes are coalesced per trial: a run not written yet gets its latest
membership with its creation; a written run gets one update per round, and only if its
membership differs from what the store holds. Parent-run metric points (the live hypervolume)
go in one ``log_batch`` per round. ``flush(timeout)`` waits for everything queued and returns
how long it waited (the engine reports it as ``tracking_wait_s``).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MAX_PARAM = 6000
MAX_TAG = 8000
MAX_KEY = 250
INSERT_ROWS = 512  # rows per multi-row INSERT on SQLite at most (a power of two)
INSERT_VARIABLES = 32766  # bound values per multi-row INSERT on SQLite (its default limit since 3.32; lowered to the connection's own)


@dataclass
class ChildRun:
    """One trial's child run, as plain data (built on the driver, written by the writer)."""

    number: int
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]  # final values, step 0
    curve: list[tuple[str, float, int]] = field(default_factory=list)  # (key, value, step) per epoch
    status: str = "FINISHED"
    artifacts_dir: Path | None = None
    start_ms: int | None = None  # when the trial really ran (the run is written after it ended)
    end_ms: int | None = None
    future: Future = field(default_factory=Future)


class BatchWriter:
    """The background writer of one search's child runs, tags and parent metric points."""

    def __init__(self, client, experiment_id: str, parent_id: str, *, max_batch: int = 1000, rest_threads: int = 4,
                 linger_s: float = 0.05) -> None:
        self.client, self.experiment_id, self.parent_id = client, experiment_id, parent_id
        self.max_batch = max_batch
        # after the first queued item, wait this long for more before a round: when trials finish
        # slower than a commit takes, each round would otherwise carry a single run
        self.linger_s = linger_s
        store = client._tracking_client.store
        self._sql = _sql_tables(store)
        self._store = store
        self._rest = None if self._sql else ThreadPoolExecutor(max_workers=rest_threads, thread_name_prefix="abacus-mlflow-rest")
        self._cond = threading.Condition()
        self._runs: list[ChildRun] = []
        self._tags: dict[int, str] = {}  # trial number -> wanted pareto tag, not yet written
        self._parent_points: list[tuple[str, float, int]] = []
        self._written: dict[int, tuple[str, str]] = {}  # trial number -> (run id, pareto tag in the store)
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self.before_round = None  # called on the writer thread before each round (the journal's fsync)
        self.rounds = 0  # write rounds (transactions on a SQL store)
        self.tag_writes = 0  # pareto tag updates of runs already in the store
        self._thread = threading.Thread(target=self._loop, name="abacus-mlflow-batch", daemon=True)
        self._thread.start()

    @property
    def bulk_sql(self) -> bool:
        return bool(self._sql)

    # -- the engine's side ------------------------------------------------------------------
    def _wake(self, was_idle: bool) -> None:
        """Wake the writer only when it waits for work (or a round is full): while it lingers it
        wakes on its own, and a notify per trial only made the two threads trade the GIL."""
        if was_idle or len(self._runs) >= self.max_batch:
            self._cond.notify()

    def _idle(self) -> bool:
        return not (self._runs or self._tags or self._parent_points)

    def add_run(self, run: ChildRun) -> Future:
        with self._cond:
            idle = self._idle()
            self._runs.append(run)
            self._wake(idle)
        return run.future

    def set_pareto(self, number: int, on_front: bool) -> None:
        with self._cond:
            idle = self._idle()
            self._tags[number] = "true" if on_front else "false"
            self._wake(idle)

    def log_parent_metric(self, key: str, value: float, step: int) -> None:
        with self._cond:
            idle = self._idle()
            self._parent_points.append((key, float(value), int(step)))
            self._wake(idle)

    def known_run(self, number: int, run_id: str, pareto: str | None = None) -> None:
        """A child run already in the store (found on resume): later tag changes update it."""
        with self._cond:
            self._written[number] = (run_id, pareto or "")

    def flush(self, timeout: float | None = None) -> float:
        """Wait until everything queued is written; returns the seconds waited. Raises the
        writer's error, or ``TimeoutError`` if ``timeout`` passed first."""
        t0 = time.perf_counter()
        with self._cond:
            self._cond.notify_all()
            ok = self._cond.wait_for(lambda: self._error is not None or not (self._busy or self._runs or self._tags or self._parent_points),
                                     timeout=timeout)
            if self._error is not None:
                raise RuntimeError(f"MLflow writer failed: {self._error}") from self._error
        if not ok:
            raise TimeoutError(f"MLflow writer still busy after {timeout:g} s")
        return time.perf_counter() - t0

    def close(self, timeout: float | None = None) -> float:
        waited = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        if self._rest is not None:
            self._rest.shutdown(wait=True)
        return waited

    # -- the writer thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._runs or self._tags or self._parent_points)
                if self._closed and not (self._runs or self._tags or self._parent_points):
                    return
                deadline = time.monotonic() + self.linger_s
                while not self._closed and len(self._runs) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                runs, self._runs = self._runs[: self.max_batch], self._runs[self.max_batch:]
                for r in runs:  # the latest membership rides along with the creation
                    if r.number in self._tags:
                        r.tags["pareto"] = self._tags.pop(r.number)
                tags = {n: v for n, v in self._tags.items() if n in self._written}
                queued = {r.number for r in self._runs}
                # a tag waits only for a run still queued; one for a run never logged is dropped
                self._tags = {n: v for n, v in self._tags.items() if n not in tags and n in queued}
                points, self._parent_points = self._parent_points, []
                self._busy = True
            try:
                if self.before_round is not None:
                    self.before_round()
                updates = [(self._written[n][0], v) for n, v in tags.items() if self._written[n][1] != v]
                self._write(runs, updates, points)
                self.rounds += 1
                self.tag_writes += len(updates)
                with self._cond:
                    # only runs on the front can change their tag again (a dominated point stays
                    # dominated): the others are forgotten, so this map is the size of the front
                    for r in runs:
                        if r.tags.get("pareto") == "true":
                            self._written[r.number] = (r.future.result(), "true")
                    for n, v in tags.items():
                        if v == "true":
                            self._written[n] = (self._written[n][0], v)
                        else:
                            self._written.pop(n, None)
            except BaseException as exc:  # surfaced by flush(); the search itself goes on
                with self._cond:
                    self._error = exc
                for r in runs:
                    if not r.future.done():
                        r.future.set_exception(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, runs: list[ChildRun], updates: list[tuple[str, str]], points: list[tuple[str, float, int]]) -> None:
        if self._sql:
            _write_sql(self._store, self._sql, self.experiment_id, self.parent_id, runs, updates, points)
            for r in runs:  # a run with weights went in RUNNING: it is closed once they are stored
                if _has_artifacts(r):
                    rid = r.future.result()
                    self.client.log_artifacts(rid, str(r.artifacts_dir))
                    self.client.set_terminated(rid, status=r.status, end_time=r.end_ms)
            return
        futures = [self._rest.submit(self._write_one_rest, r) for r in runs]
        futures += [self._rest.submit(self.client.set_tag, rid, "pareto", v) for rid, v in updates]
        if points:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, s) for k, v, s in points]
            for i in range(0, len(metrics), 1000):
                self.client.log_batch(self.parent_id, metrics=metrics[i:i + 1000])
        for f in futures:
            f.result()

    def _write_one_rest(self, r: ChildRun) -> None:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=r.run_name, tags=r.tags, start_time=r.start_ms)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, 0) for k, v in r.metrics.items()] + [Metric(k, float(v), now, s) for k, v, s in r.curve]
        ps = [Param(k, v) for k, v in r.params.items()]
        while ps or ms:
            p_chunk, ps = ps[:100], ps[100:]
            m_chunk, ms = ms[: 1000 - len(p_chunk)], ms[1000 - len(p_chunk):]
            self.client.log_batch(rid, metrics=m_chunk, params=p_chunk)
        if r.artifacts_dir is not None and r.artifacts_dir.is_dir():
            self.client.log_artifacts(rid, str(r.artifacts_dir))
        self.client.set_terminated(rid, status=r.status, end_time=r.end_ms)
        r.future.set_result(rid)


# -- the SQL path ------------------------------------------------------------------------------
_NEEDED = {
    "runs": {"run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
             "end_time", "lifecycle_stage", "artifact_uri", "experiment_id", "source_version"},
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}


def _sql_tables(store) -> dict[str, Any] | None:
    """The ORM tables of the installed MLflow, if the store is a SQL store and they have the
    columns we write (else None: the client path is used)."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # pragma: no cover - an MLflow without the SQL store
        return None
    if not isinstance(store, SqlAlchemyStore):
        return None
    tables = {m.__tablename__: m.__table__ for m in (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric)}
    for name, cols in _NEEDED.items():
        have = {c.name for c in tables[name].columns}
        if not cols <= have:
            return None
        extra_required = [c.name for c in tables[name].columns if c.name not in cols and not c.nullable and c.default is None]
        if extra_required:
            return None
    return tables


def _has_artifacts(r: ChildRun) -> bool:
    return r.artifacts_dir is not None and r.artifacts_dir.is_dir()


def _write_sql(store, tables: dict[str, Any], experiment_id: str, parent_id: str, runs: list[ChildRun],
               updates: list[tuple[str, str]], points: list[tuple[str, float, int]]) -> None:
    """One transaction for a round: runs, tags, params, metrics, latest metrics, tag updates."""
    import math

    from mlflow.entities import LifecycleStage, SourceType
    from mlflow.utils.uri import append_to_uri_path
    from sqlalchemy import and_, bindparam, insert, update

    now = int(time.time() * 1000)
    artifact_root = store.get_experiment(experiment_id).artifact_location
    run_rows, tag_rows, param_rows, metric_rows = [], [], [], []
    latest: dict[tuple[str, str], dict[str, Any]] = {}

    def metric(rid: str, key: str, value: float, step: int, ts: int) -> None:
        nan = math.isnan(value)
        row = {"key": key[:MAX_KEY], "value": 0.0 if nan else value, "timestamp": ts, "step": step, "is_nan": nan, "run_uuid": rid}
        metric_rows.append(row)
        best = latest.get((rid, row["key"]))
        if best is None or (step, ts, row["value"]) >= (best["step"], best["timestamp"], best["value"]):
            latest[(rid, row["key"])] = row

    ids = []
    for r in runs:
        rid = uuid.uuid4().hex
        ids.append(rid)
        run_rows.append({"run_uuid": rid, "name": r.run_name, "source_type": SourceType.to_string(SourceType.UNKNOWN),
                         "source_name": "", "entry_point_name": "", "user_id": r.tags.get("mlflow.user", "unknown"),
                         # RUNNING until its artifacts are stored: a crash in between leaves a run
                         # that resume recognises as cut short (Tracker.child_runs) and logs again
                         "status": "RUNNING" if _has_artifacts(r) else r.status,
                         "start_time": r.start_ms or now, "end_time": r.end_ms or now, "lifecycle_stage": LifecycleStage.ACTIVE, "source_version": "",
                         "artifact_uri": append_to_uri_path(artifact_root, rid, "artifacts"), "experiment_id": int(experiment_id)})
        tags = {"mlflow.runName": r.run_name, **r.tags}
        tag_rows += [{"key": k[:MAX_KEY], "value": str(v)[:MAX_TAG], "run_uuid": rid} for k, v in tags.items()]
        param_rows += [{"key": k[:MAX_KEY], "value": str(v)[:MAX_PARAM], "run_uuid": rid} for k, v in r.params.items()]
        seen = set()
        for k, v, s in [(k, v, 0) for k, v in r.metrics.items()] + list(r.curve):
            if (k, s, v) in seen:  # the metrics table's key includes (key, timestamp, step, value)
                continue
            seen.add((k, s, v))
            metric(rid, k, float(v), int(s), now)
    for k, v, s in points:
        metric(parent_id, k, float(v), int(s), now)
    parent_latest = {key: row for key, row in latest.items() if key[0] == parent_id}
    with store.ManagedSessionMaker(read_only=False) as session:
        if run_rows:
            _insert(session, tables["runs"], run_rows)
        if tag_rows:
            _insert(session, tables["tags"], tag_rows)
        if param_rows:
            _insert(session, tables["params"], param_rows)
        if metric_rows:
            _insert(session, tables["metrics"], metric_rows)
        child_latest = [row for key, row in latest.items() if key[0] != parent_id]
        if child_latest:
            _insert(session, tables["latest_metrics"], child_latest)
        if parent_latest:  # the parent's latest rows may exist already: replace them if older
            lm = tables["latest_metrics"]
            existing = {row.key: row for row in session.execute(
                lm.select().where(and_(lm.c.run_uuid == parent_id, lm.c.key.in_([k for _, k in parent_latest])))
            )}
            for (_, key), row in parent_latest.items():
                old = existing.get(key)
                if old is None:
                    session.execute(insert(lm), [row])
                elif (row["step"], row["timestamp"], row["value"]) >= (old.step, old.timestamp, old.value):
                    session.execute(update(lm).where(and_(lm.c.run_uuid == parent_id, lm.c.key == key)).values(
                        value=row["value"], timestamp=row["timestamp"], step=row["step"], is_nan=row["is_nan"]))
        if updates:
            t = tables["tags"]
            stmt = update(t).where(and_(t.c.run_uuid == bindparam("rid"), t.c.key == "pareto")).values(value=bindparam("v"))
            session.execute(stmt, [{"rid": rid, "v": v} for rid, v in updates])
    for r, rid in zip(runs, ids):
        r.future.set_result(rid)


def _insert(session, table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into one of MLflow's tables. On SQLite: multi-row ``INSERT ... VALUES
    (...), (...)`` statements instead of an ``executemany``. Why: the sqlite3 driver releases the
    GIL around every row of an ``executemany`` and has to win it back from the driver's busy trial
    loop each time (measured: 1,000 runs written in 0.74 s beside an idle main thread, 8.1 s
    beside a busy one, which left a 10 s wait at the end of a 10,000-trial search); a few
    statements per round hand the GIL over a few times. Statements hold a power of two of rows
    (up to ``INSERT_ROWS``): the sqlite3 module caches a prepared statement per distinct SQL text,
    so a bounded set of shapes keeps that cache (and the driver's memory) bounded. Other
    databases: SQLAlchemy's ``executemany`` (its "insertmanyvalues" batching already sends pages
    of rows per statement)."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        from sqlalchemy import insert

        session.execute(insert(table), rows)
        return
    quote = conn.dialect.identifier_preparer
    cols = list(rows[0])
    head = f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in cols)}) VALUES "
    one = "(" + ",".join("?" * len(cols)) + ")"
    i = 0
    for size in _chunk_sizes(len(rows), max(1, _variable_limit(conn) // len(cols))):
        chunk = rows[i:i + size]
        conn.exec_driver_sql(head + ",".join([one] * size), tuple(r[c] for r in chunk for c in cols))
        i += size


def _chunk_sizes(n: int, most: int) -> list[int]:
    """``n`` split into powers of two no larger than ``INSERT_ROWS`` or ``most``, largest first."""
    top = 1 << (min(INSERT_ROWS, most).bit_length() - 1)
    sizes = [top] * (n // top)
    rest = n % top
    while rest:
        p = 1 << (rest.bit_length() - 1)
        sizes.append(p)
        rest -= p
    return sizes


def _variable_limit(conn) -> int:
    """Bound values one SQLite statement may take: ``INSERT_VARIABLES`` or the library's own
    lower limit (999 before SQLite 3.32)."""
    import sqlite3

    try:
        return min(INSERT_VARIABLES, conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # Python < 3.11 has no getlimit
        return 999


def child_run(number: int, role: str, arch: Mapping[str, Any], tags: Mapping[str, str], metrics: Mapping[str, float],
              history: list[Mapping[str, float]], state: str, reason: str, parent_id: str,
              artifacts_dir: Path | None = None, *, search: str | None = None, start_ms: int | None = None,
              end_ms: int | None = None) -> ChildRun:
    """The child run of a trial (``role="trial"``) or a retrained front member (``"retrain"``),
    with the same name, tags, params and metrics as ``Tracker.log_trial`` writes (``search.run_layout``)."""
    from search.run_layout import trial_metric_points, trial_run_name

    number_tag = "trial_number" if role == "trial" else "retrain_of"
    all_tags = {"mlflow.parentRunId": parent_id, "abacus.role": role, number_tag: str(number), "state": state,
                **({"fail_reason": reason[:5000]} if reason else {}), **{k: str(v) for k, v in tags.items()}}
    points = trial_metric_points(metrics, history)
    finals = {k: v for k, v, step, _ in points if step == 0}
    curve = [(k, v, step) for k, v, step, _ in points if step > 0]
    status = "FINISHED" if state == "complete" else "FAILED" if state == "fail" else "KILLED"
    return ChildRun(number, trial_run_name(search, role, number), all_tags, {k: str(v)[:MAX_PARAM] for k, v in arch.items()},
                    finals, curve, status, artifacts_dir, start_ms, end_ms)
