"""The driver's steady per-trial work stays O(1) in the trial count: counted calls and sizes over a
600-trial search (local executor, instant evaluator), never wall time.

- ``study.ask()`` finds enqueued trials through the WAITING index, never by scanning the history;
- the ``outcome`` user attribute (~3 KiB a trial) is in the journal file, not in the driver's
  Optuna storage (which holds a constant-size stand-in), and resume still reads it in full;
- the cost model is called once per distinct architecture;
- the MLflow writer inserts many rows per SQLite statement (a few statements per round, of a
  bounded set of shapes), never one ``executemany`` row at a time.
"""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalStorageReplayResult

import scale_helpers
from search.engine import SearchEngine
from search.journal import BufferedJournalFileBackend, IndexedJournalStorage


def _waiting_by_scan(storage, study_id):
    return [t.number for t in optuna.storages.JournalStorage.get_all_trials(storage, study_id, deepcopy=False)
            if t.state == optuna.trial.TrialState.WAITING]


def test_the_waiting_index_equals_a_scan_and_ask_pops_enqueued_trials_in_order(tmp_path):
    path = str(tmp_path / "s.journal")
    storage = IndexedJournalStorage(BufferedJournalFileBackend(path))
    study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    other = optuna.create_study(study_name="other", storage=storage)
    other.enqueue_trial({"x": 9})  # another study's waiting trial is never handed to this one
    for x in (3, 1, 2):
        study.enqueue_trial({"x": x})
    sid = study._study_id
    assert [t.number for t in storage.get_all_trials(sid, deepcopy=False, states=(optuna.trial.TrialState.WAITING,))] == \
        _waiting_by_scan(storage, sid) == [0, 1, 2]
    got = []
    for _ in range(5):
        t = study.ask()
        got.append(t.suggest_int("x", 0, 9))
        study.tell(t, 0.0)
    assert got[:3] == [3, 1, 2]
    assert _waiting_by_scan(storage, sid) == [] and storage.get_all_trials(sid, states=(optuna.trial.TrialState.WAITING,)) == []
    storage._backend.flush()
    # replayed from the file: the index is rebuilt (the other study's trial still waits)
    again = IndexedJournalStorage(BufferedJournalFileBackend(path))
    oid = other._study_id
    assert [t.system_attrs["fixed_params"] for t in again.get_all_trials(oid, states=(optuna.trial.TrialState.WAITING,))] == [{"x": 9}]
    with pytest.raises(KeyError):
        again.get_all_trials(99, states=(optuna.trial.TrialState.WAITING,))


def test_a_file_only_attribute_is_in_the_file_in_full_and_a_stand_in_in_memory(tmp_path):
    path = str(tmp_path / "s.journal")
    backend = BufferedJournalFileBackend(path, file_only={"outcome": lambda o: {"state": o["state"]}})
    study = optuna.create_study(study_name="s", storage=IndexedJournalStorage(backend))
    big = {"state": "complete", "metrics": {f"m{i}": float(i) for i in range(100)}}
    t = study.ask()
    t.set_user_attr("outcome", big)
    t.set_user_attr("arch", {"x": 1})
    study.tell(t, 1.0)
    backend.flush()
    assert study.trials[0].user_attrs == {"outcome": {"state": "complete"}, "arch": {"x": 1}}
    replayed = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(path)))
    assert replayed.trials[0].user_attrs == {"outcome": big, "arch": {"x": 1}}


def test_per_trial_work_is_constant_over_a_600_trial_search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 600
    cfg = scale_helpers.config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", n)
    scans = []
    real_scan = JournalStorageReplayResult.get_all_trials

    def counted_scan(self, study_id, states):
        if states is not None and optuna.trial.TrialState.WAITING in states:
            scans.append(len(self._trials))
        return real_scan(self, study_id, states)

    monkeypatch.setattr(JournalStorageReplayResult, "get_all_trials", counted_scan)
    import search.cost_inputs as cost_inputs

    costed = []
    real_cost = cost_inputs.cost_reports
    monkeypatch.setattr(cost_inputs, "cost_reports", lambda space, archs, *a, **k: costed.append(len(archs)) or real_cost(space, archs, *a, **k))
    statements = []
    engine = SearchEngine(cfg, progress=False)

    def watch_store():  # every statement the batch writer runs, with its number of parameter sets
        import threading

        from sqlalchemy import event

        def seen(conn, cursor, sql, params, context, executemany):
            if threading.current_thread().name == "abacus-mlflow-batch":
                statements.append((sql.split("(")[0].strip(), len(params) if executemany else 1, sql.count("),(") + 1))

        event.listen(engine.tracker.client._tracking_client.store.engine, "before_cursor_execute", seen)

    real_ready = engine._tracking_ready
    watched = []

    def tracking_ready():
        real_ready()
        if not watched:
            watched.append(1)
            watch_store()

    engine._tracking_ready = tracking_ready
    summary = engine.run()
    assert summary["complete"] == n

    # ask never scanned the history for WAITING trials
    assert scans == []
    # the cost model ran once per distinct architecture, one architecture per call
    distinct = {r.arch_id for r in engine.records.values()}
    assert sum(costed) == len(costed) == len(distinct) < n and engine.cost_model.memo_hits == n - len(distinct)
    # the driver's Optuna storage holds a constant-size stand-in per trial, the file the whole outcome
    mem = [len(json.dumps(t.user_attrs)) for t in engine.study.get_trials(deepcopy=False)]
    assert max(mem) < 200 and max(mem) - min(mem) < 60, (min(mem), max(mem))
    replayed = optuna.load_study(study_name="scale", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(engine.out / "study.journal"))))
    full = [t.user_attrs["outcome"] for t in replayed.trials]
    assert len(full) == n and all(o["metrics"] and o["values"] for o in full)
    # child runs went in as multi-row inserts: a few statements per round, not one row at a time
    batch = engine.tracker.batch
    from search.tracking_batch import INSERT_ROWS

    inserts = [(sql, k, rows) for sql, k, rows in statements if sql.startswith("INSERT INTO metrics")]
    assert inserts and all(k == 1 for _, k, _ in inserts)
    rows = sum(r for _, _, r in inserts)
    assert rows >= n * 5  # a trial's final metrics and curve points, and the hypervolume point
    # per round: full statements of INSERT_ROWS rows, the rest in at most one statement per bit
    assert len(inserts) <= batch.rounds * INSERT_ROWS.bit_length() + rows // INSERT_ROWS
    assert len(inserts) * 10 < rows and batch.rounds < n


def test_a_space_pickles_without_its_derived_caches():
    """Each trial's spec carries the space to a Ray worker: what it ships must not grow with use."""
    import pickle

    import cloudpickle
    from spaces import get_space

    space = get_space(scale_helpers.register())
    fresh = len(cloudpickle.dumps(space))
    space.validate({"x": 1, "y": 2})
    assert len(cloudpickle.dumps(space)) == fresh
    again = pickle.loads(pickle.dumps(space))
    assert again.validate({"x": 3, "y": 4}) == {"x": 3, "y": 4}
