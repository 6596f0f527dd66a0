"""The engine's front bookkeeping stays O(front) per trial over a 1,000-trial search (local
executor, instant evaluator): counted comparisons and store writes, never wall time."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from search.archive import ParetoArchive, hypervolume_curve
from search.engine import SearchEngine
from search.pareto import hypervolume, non_dominated_mask

import scale_helpers


@pytest.mark.parametrize("seed", range(4))
def test_archive_equals_the_batch_front_after_every_add(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 8, size=(150, 3)).astype(float)  # ties and duplicates on purpose
    dirs = ["maximize", "minimize", "minimize"]
    archive = ParetoArchive(dirs)
    for i, v in enumerate(values):
        archive.add(i, v)
        mask = non_dominated_mask(values[: i + 1], dirs)
        assert set(archive.keys) == set(np.flatnonzero(mask)), i


def test_hypervolume_curve_equals_every_prefix_recomputed():
    rng = np.random.default_rng(1)
    values = rng.random((200, 2))
    dirs = ["maximize", "minimize"]
    archive = ParetoArchive(dirs)
    for i, v in enumerate(values):
        archive.add(i, v)
    ref = [0.0, 1.1]
    curve = hypervolume_curve(range(200), archive.changes, dict(enumerate(values)), dirs, ref)
    assert [s for s, _ in curve] == list(range(200))
    assert np.allclose([hv for _, hv in curve], [hypervolume(values[: k + 1], dirs, ref) for k in range(200)])


def test_a_1000_trial_search_does_front_work_in_proportion_to_the_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 1000
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = scale_helpers.config(tmp_path, uri, n)
    hv_calls = []
    import search.archive as archive_mod

    real_hv = archive_mod.hypervolume
    monkeypatch.setattr(archive_mod, "hypervolume", lambda *a, **k: hv_calls.append(1) or real_hv(*a, **k))
    engine = SearchEngine(cfg, progress=False)
    summary = engine.run()
    assert summary["complete"] == n

    archive = engine.archive
    front = {row["trial"] for row in summary["front"]}
    assert set(archive.keys) == front
    # O(front) per trial: each new point was compared with the front only, never with the history
    # (a per-trial recomputation would compare ~n^2/2 = 500,000 pairs)
    entered = len(archive.changes)
    assert archive.comparisons <= n * archive.max_size
    assert archive.max_size < 40 and archive.comparisons < 40 * n, (archive.max_size, archive.comparisons)
    # the end-of-run curve computes one volume per front change (plus the final one), not one per prefix
    assert len(hv_calls) <= entered + 1 and entered < n // 10

    client = MlflowClient(uri)
    runs = client.search_runs([summary["mlflow_experiment_id"]], max_results=5000,
                              filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    assert len(runs) == n
    tagged = {int(r.data.tags["trial_number"]) for r in runs if r.data.tags.get("pareto") == "true"}
    assert tagged == front
    assert all(r.data.tags.get("pareto") in ("true", "false") for r in runs)
    # tag writes only for runs whose membership changed after they were written, batched:
    # at most one per eviction, in far fewer store rounds than trials
    batch = engine.tracker.batch
    evictions = sum(len(c.evicted) for c in archive.changes)
    assert batch.tag_writes <= evictions
    if batch.bulk_sql:
        assert batch.rounds < n
    some = runs[0]
    assert {"val_accuracy", "val_loss", "energy_mj"} <= set(some.data.metrics) and set(some.data.params) == {"x", "y"}
    assert len(front) > 2, "independent scores make a front of several points"
    hist = client.get_metric_history(summary["parent_run_id"], "hypervolume")
    assert len(hist) == n
    assert max(m.value for m in hist) == pytest.approx(summary["hypervolume"])
    # the journal is synced to disk once per MLflow round (before its child runs), not per trial,
    # and still replays every trial
    assert 1 <= engine.journal.syncs <= batch.rounds + 1 and engine.journal.syncs < n
    import optuna
    from optuna.storages.journal import JournalFileBackend

    replayed = optuna.load_study(study_name="scale", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(engine.out / "study.journal"))))
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in replayed.trials) == n
