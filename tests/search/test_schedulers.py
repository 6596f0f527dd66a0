"""MO-ASHA promotion on synthetic problems with known fronts, and early stopping in a real search."""

from __future__ import annotations

import numpy as np
import pytest

from search.schedulers import MOASHA, OptunaPrunerScheduler, rung_epochs


def test_rungs_are_geometric_and_below_the_budget():
    assert rung_epochs(1, 3, 27) == [1, 3, 9]
    assert rung_epochs(2, 2, 9) == [2, 4, 8]
    with pytest.raises(ValueError, match="reduction_factor >= 2"):
        rung_epochs(1, 1, 9)


def test_single_objective_reduces_to_asha():
    s = MOASHA(["maximize"], max_epochs=4, min_epochs=1, reduction_factor=2)
    arrivals = [0.5, 0.7, 0.6, 0.9, 0.1, 0.8]
    stops = [s.report(i, 1, [v]) for i, v in enumerate(arrivals)]
    # n=1,2: only the best continues; n=3: top 1; n=4,5: top 2; n=6: top 3
    assert stops == [False, False, True, False, True, False]
    assert s.report(0, 3, [0.0]) is False, "epochs that are not rungs never stop a trial"


def test_dominated_trials_stop_and_front_extremes_continue():
    front = [(0.90, 5.0), (0.80, 3.0), (0.70, 2.0), (0.60, 1.0)]  # (accuracy max, energy min)
    dominated = [(0.85, 6.0), (0.75, 3.5), (0.65, 2.5), (0.55, 1.5)]
    s = MOASHA(["maximize", "minimize"], max_epochs=4, min_epochs=1, reduction_factor=2)
    decisions = {}
    for i, v in enumerate(front + dominated):
        decisions[i] = s.report(i, 1, list(v))
    assert all(decisions[i] for i in range(4, 8)), "every dominated trial stops at the rung"
    assert decisions[0] is False  # first arrival
    # a late front member at an extreme of the front (best accuracy) is promoted
    assert s.report(99, 1, [0.95, 7.0]) is False
    # a late dominated one is not
    assert s.report(100, 1, [0.5, 9.0]) is True


@pytest.mark.parametrize("tie_break", ["crowding", "hypervolume"])
def test_promotion_follows_non_dominated_sorting_on_random_problems(tie_break):
    from search.pareto import non_dominated_mask

    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = rng.random((9, 2))
        s = MOASHA(["minimize", "minimize"], max_epochs=2, min_epochs=1, reduction_factor=3, tie_break=tie_break)
        stops = [s.report(i, 1, list(p)) for i, p in enumerate(pts)]
        # brute-force non-dominated ranks (peel fronts); k = 9 // 3 = 3 trials continue
        ranks, left, r = np.full(9, -1), np.arange(9), 0
        while len(left):
            m = non_dominated_mask(pts[left], ["minimize", "minimize"])
            ranks[left[m]] = r
            left, r = left[~m], r + 1
        better = int(np.sum(ranks < ranks[-1]))
        same = int(np.sum(ranks == ranks[-1]))
        if better >= 3:
            assert stops[-1] is True, "three trials rank strictly better: the last one stops"
        if better + same <= 3:
            assert stops[-1] is False, "its whole rank fits in the top 3: it continues"


def test_nan_values_stop_the_trial():
    s = MOASHA(["maximize"], max_epochs=4)
    assert s.report(0, 1, [float("nan")]) is True


def test_optuna_pruner_scheduler_uses_optunas_median_rule():
    import optuna

    s = OptunaPrunerScheduler("maximize", optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for t, v in enumerate([0.9, 0.8]):
        assert s.report(t, 1, [v]) is False
        s.finish(t, v)
    assert s.report(2, 1, [0.1]) is True   # below the median of completed trials at step 1
    assert s.report(3, 1, [0.95]) is False


def test_search_with_mo_asha_records_pruned_trials_with_the_epoch_reached(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from search.config import load_config
    from search.engine import SearchEngine

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], name="asha", space="addernet-resnet",
                      fixed={"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1,
                             "stage2.blocks": 1, "stage3.blocks": 1, "stage1.op": "conv", "stage2.op": "conv", "stage3.op": "conv",
                             "manidp.enabled": False},
                      scheduler={"name": "mo-asha", "min_epochs": 1, "reduction_factor": 3},
                      budget={"trials": 6, "epochs": 3}, strategy={"name": "random"}, executor="local")
    summary = SearchEngine(cfg, progress=False).run()
    assert summary["pruned"] >= 1 and summary["complete"] >= 1
    assert summary["complete"] + summary["pruned"] + summary["failed"] == 6
    exp = MlflowClient(uri).get_experiment_by_name("asha")
    runs = MlflowClient(uri).search_runs([exp.experiment_id])
    pruned = [r for r in runs if r.data.tags.get("state") == "pruned"]
    assert len(pruned) == summary["pruned"]
    for r in pruned:
        assert int(r.data.tags["pruned_at_epoch"]) < 3 and r.data.metrics["epochs"] < 3
