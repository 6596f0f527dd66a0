"""One-shot search end to end (tiny budget), its config checks, and data-parallel supernet training."""

from __future__ import annotations

import pytest
import torch

from search.config import load_config
from search.errors import ConfigError

TINY = {
    "restrict": {**{f"stage{s}.op": ["conv", "binary"] for s in (1, 2, 3)},
                 **{f"stage{s}.width": [0.25, 0.5] for s in (1, 2, 3)},
                 **{f"stage{s}.blocks": [1, 1] for s in (1, 2, 3)}},
    "fixed": {f"stage{s}.bits": 32 for s in (1, 2, 3)},
}


def _write(tmp_path, extra: str = "") -> str:
    import yaml

    cfg = {"name": "oneshot-test", "space": "addernet-resnet", **TINY,
           "objectives": [{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
           "strategy": {"name": "nsga2", "options": {"population_size": 8}}, "budget": {"trials": 24},
           "oneshot": {"epochs": 1, "sampling": "strict-fair", "recalibration_batches": 2, "candidates_per_task": 4},
           "retrain": {"epochs": 1}, "evaluator": {"data": "digits", "batch_size": 64}, "workers": 2,
           "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}, "out": str(tmp_path / "run"), "save_weights": False}
    path = tmp_path / "oneshot.yaml"
    path.write_text(yaml.safe_dump(cfg) + extra)
    return str(path)


def _threshold(cfg) -> float:
    """An energy bound that rejects the wider conv candidates: the cost of the narrowest conv net."""
    import hw_cost
    from spaces import get_space

    space = get_space(cfg.space).restricted(cfg.restrict)
    arch = space.validate(space.complete({**cfg.fixed, **{f"stage{s}.width": 0.25 for s in (1, 2, 3)},
                                          **{f"stage{s}.op": "conv" for s in (1, 2, 3)}}))
    report = hw_cost.estimate(space.workloads(arch, (1, 1, 8, 8), num_classes=10), (1, 1, 8, 8))
    return float(report.energy_mj)


def test_oneshot_search_end_to_end(tmp_path, ray_session):
    from mlflow.tracking import MlflowClient

    from search.engine import SearchEngine

    cfg = load_config(_write(tmp_path))
    cfg.constraints = [f"energy_mj <= {_threshold(cfg) * 1.001:.9g}"]
    engine = SearchEngine(cfg, progress=False)
    summary = engine.run()
    # infeasible candidates are not charged to the budget (search.failures): 24 scored, plus the rejected
    assert summary["trials"] - summary["infeasible"] == 24 and summary["complete"] >= 2 and summary["infeasible"] >= 1
    assert summary["front"] and summary["retrained"]
    client = MlflowClient(summary["tracking_uri"])
    runs = client.search_runs([summary["mlflow_experiment_id"]], max_results=1000)
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("abacus.role"), []).append(r)
    (sn_run,) = by_role["supernet"]
    assert sn_run.data.tags["mlflow.parentRunId"] == summary["parent_run_id"]
    assert "train_loss" in sn_run.data.metrics and "val_accuracy_largest" in sn_run.data.metrics
    assert {a.path for a in client.list_artifacts(sn_run.info.run_id)} >= {"supernet.pt", "supernet.json"}
    trials = by_role["trial"]
    scored = [r for r in trials if r.data.tags["state"] == "complete"]
    assert scored and all(r.data.tags["score_source"] == "inherited" for r in scored)
    infeasible = [r for r in trials if r.data.tags["state"] == "infeasible"]
    assert infeasible and all("score_source" not in r.data.tags for r in infeasible)  # rejected before scoring
    assert all(r.data.tags["score_source"] == "trained" for r in by_role["retrain"])
    assert all(0.0 <= r.data.metrics["val_accuracy"] <= 1.0 for r in scored)
    # inherited candidates report their size as trained ones do (the path's built network)
    assert all(r.data.metrics["params"] > 0 and r.data.metrics["macs"] >= 0 for r in scored)
    retrained = {r.data.tags["arch_id"]: r for r in by_role["retrain"]}
    twins = [(r, retrained[r.data.tags["arch_id"]]) for r in scored if r.data.tags["arch_id"] in retrained]
    assert twins and all(a.data.metrics["params"] == b.data.metrics["params"] and a.data.metrics["macs"] == b.data.metrics["macs"]
                         for a, b in twins)
    # the search's candidates are paths of the supernet: recipes fixed at its values
    assert all(r.data.params["recipe.adder_eta"] == "0.2" for r in scored)


def test_resumed_oneshot_reuses_the_trained_supernet(tmp_path, ray_session):
    from search.engine import SearchEngine

    path = _write(tmp_path)
    cfg = load_config(path, ["budget.trials=6", "retrain=null"])
    SearchEngine(cfg, progress=False).run()
    weights = (tmp_path / "run" / "supernet" / "supernet.pt").stat().st_mtime_ns
    cfg2 = load_config(path, ["budget.trials=10", "retrain=null"])
    summary = SearchEngine(cfg2, progress=False).run(resume=True)
    assert summary["trials"] == 10
    assert (tmp_path / "run" / "supernet" / "supernet.pt").stat().st_mtime_ns == weights  # not trained again


@pytest.mark.parametrize("override,key", [
    ("oneshot.sampling=fairest", "oneshot.sampling"),
    ("scheduler.name=mo-asha", "scheduler.name"),
    ("fixed={manidp.enabled: true}", "fixed.manidp.enabled"),
])
def test_bad_oneshot_configs_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(_write(tmp_path), [override])


@pytest.mark.slow
def test_ddp_replicas_end_with_identical_weights(tmp_path, ray_session):
    from evaluators.supernet import load_supernet, train_supernet_distributed
    from spaces import get_space

    space = get_space("addernet-resnet").restricted(TINY["restrict"])
    dump = tmp_path / "replicas"
    dump.mkdir()
    res = train_supernet_distributed(space=space, fixed=TINY["fixed"], data="digits", data_kwargs={"batch_size": 64},
                                     workers=2, out_dir=tmp_path / "sn", sampling="strict-fair", epochs=1, seed=3,
                                     dump_replicas=str(dump))
    r0 = torch.load(dump / "replica0.pt", weights_only=True)
    r1 = torch.load(dump / "replica1.pt", weights_only=True)
    assert r0.keys() == r1.keys() and len(r0) > 10
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
    sn = load_supernet(tmp_path / "sn")  # the driver's copy is the replicas' weights
    for name, p in sn.named_parameters():
        assert torch.equal(p, r0[name])
    assert res["history"] and res["history"][-1]["epoch"] == 0


def _saved_supernet(tmp_path):
    import supernets
    from evaluators.supernet import save_supernet
    from spaces import get_space

    space = get_space("addernet-resnet").restricted(TINY["restrict"])
    torch.manual_seed(0)
    sn = supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10, fixed=TINY["fixed"])
    save_supernet(sn, tmp_path / "sn")
    archs = [{f"stage{s}.op": op, f"stage{s}.width": w, f"stage{s}.blocks": 1} for op, w in
             [("conv", 0.25), ("binary", 0.5), ("conv", 0.5), ("binary", 0.25)] for s in (1, 2, 3)]
    archs = [{k: v for a in archs[i:i + 3] for k, v in a.items()} for i in range(0, len(archs), 3)]
    return tmp_path / "sn", archs


DATA = {"data": "digits", "data_kwargs": {}, "batch_size": 64, "seed": 0, "recalibration_batches": 2}


def test_scorer_actors_give_the_in_process_scores_and_survive_a_lost_actor(tmp_path, ray_session):
    """Actors hold the supernet between batches and score exactly as in this process; a killed
    actor fails only its own batches ('worker lost') and a new actor scores the rest."""
    from types import SimpleNamespace

    from search.oneshot import InheritedExecutor, SupernetScorer, supernet_payload

    d, archs = _saved_supernet(tmp_path)
    local = SupernetScorer(supernet_payload(d), DATA).score(list(enumerate(archs)))
    ex = InheritedExecutor(d, DATA, workers=1, candidates_per_task=2, max_retries=1)
    try:
        for i, a in enumerate(archs):
            ex.submit(SimpleNamespace(number=i, arch=a))
        got = sorted((ex.wait_one() for _ in archs), key=lambda r: r.number)
        assert [r.metrics["val_accuracy"] for r in got] == [r.metrics["val_accuracy"] for r in local]
        assert all(r.score_source == "inherited" and r.metrics["params"] > 0 for r in got)
        ray_session.kill(ex._actors[0])
        for i, a in enumerate(archs[:2]):
            ex.submit(SimpleNamespace(number=10 + i, arch=a))
        lost = [ex.wait_one() for _ in range(2)]
        assert all(r.state == "fail" and "worker lost" in r.reason for r in lost)
        for i, a in enumerate(archs[2:]):
            ex.submit(SimpleNamespace(number=20 + i, arch=a))
        later = sorted((ex.wait_one() for _ in archs[2:]), key=lambda r: r.number)
        assert [r.metrics.get("val_accuracy") for r in later] == [r.metrics["val_accuracy"] for r in local[2:]]
    finally:
        ex.shutdown()
