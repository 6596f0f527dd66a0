"""The hypervolume reference point is fixed by the problem: searches of one problem share it,
their MLflow hypervolumes order as ``abacus compare`` orders them, other problems are refused."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from search.compare import compare
from search.config import load_config
from search.engine import CostModel, SearchEngine
from search.pareto import hypervolume
from search.problem import COST_HEADROOM, TAG_PROBLEM, define_problem, reference_from_tags
from search.runs import RunLookupError
from spaces import get_space

FREE = {"stage1.op": ["conv", "adder"], "stage2.op": ["conv", "adder"], "stage1.blocks": [1, 2], "stage2.blocks": [1, 2]}


def _fixed() -> dict:
    """Everything but FREE fixed (small widths), so a search and a brute force stay small."""
    default = get_space("addernet-resnet").default()
    small = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage3.blocks": 1}
    return {k: small.get(k, v) for k, v in default.items() if k not in FREE}


def test_cost_reference_is_the_worst_architecture_of_the_space_plus_headroom():
    cfg = load_config(None, name="p", space="addernet-resnet", fixed=_fixed(), restrict=FREE)
    space = get_space(cfg.space).restricted(cfg.restrict)
    cost = CostModel(cfg, space, (1, 8, 8), 10)
    problem = define_problem(cfg, space, cost, (1, 8, 8), 10)
    worst = max(cost(space.complete({**dict(zip(FREE, combo)), **cfg.fixed}))[0]["energy_mj"]
                for combo in itertools.product(*FREE.values()))
    ref = problem.reference_point
    assert ref["energy_mj"] == pytest.approx(worst * (1 + COST_HEADROOM))
    assert ref["val_accuracy"] == pytest.approx(0.1)  # chance level of 10 classes
    # the key follows the problem, not the search: strategy and seed do not change it, the device does
    other = load_config(None, name="q", space="addernet-resnet", fixed=_fixed(), restrict=FREE, seed=7, strategy={"name": "tpe"})
    assert define_problem(other, space, CostModel(other, space, (1, 8, 8), 10), (1, 8, 8), 10).key == problem.key
    moved = load_config(None, name="r", space="addernet-resnet", fixed=_fixed(), restrict=FREE, **{"hardware.device": "zcu102"})
    p2 = define_problem(moved, space, CostModel(moved, space, (1, 8, 8), 10), (1, 8, 8), 10)
    assert p2.key != problem.key
    # a configured coordinate replaces the derived one (and is part of the key)
    fixed_ref = load_config(None, name="s", space="addernet-resnet", fixed=_fixed(), restrict=FREE, reference_point={"val_accuracy": 0.0})
    p3 = define_problem(fixed_ref, space, CostModel(fixed_ref, space, (1, 8, 8), 10), (1, 8, 8), 10)
    assert p3.reference_point["val_accuracy"] == 0.0 and p3.key != problem.key


def _search(tmp_path, name: str, uri: str, **over) -> dict:
    cfg = load_config(None, name=name, space="addernet-resnet", fixed=_fixed(), restrict=FREE, executor="local", workers=1,
                      save_weights=False, evaluator={"function": "problem_helpers:size_score"}, out=str(tmp_path / "runs" / name),
                      mlflow={"tracking_uri": uri, "experiment": over.pop("experiment", "shared")},
                      **{"budget.trials": 4, "budget.epochs": 2, **over})
    return SearchEngine(cfg, progress=False).run()


def test_two_searches_of_one_problem_compare_in_mlflow_as_in_abacus_compare(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    a = _search(tmp_path, "s-random", uri, strategy={"name": "random"}, seed=1)
    b = _search(tmp_path, "s-tpe", uri, strategy={"name": "tpe"}, seed=2)
    client = MlflowClient(uri)
    pa, pb = client.get_run(a["parent_run_id"]), client.get_run(b["parent_run_id"])
    names = ["val_accuracy", "energy_mj"]

    # one problem, one reference point, recorded on both parents before training
    assert pa.data.tags[TAG_PROBLEM] == pb.data.tags[TAG_PROBLEM] == a["problem"] == b["problem"]
    ref = reference_from_tags(pa.data.tags, names)
    assert ref == reference_from_tags(pb.data.tags, names) == a["reference_point"] == b["reference_point"]

    # every hypervolume metric is on it: the final value and the last point of the live curve
    for s, parent in ((a, pa), (b, pb)):
        children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.state = 'complete'")
        values = np.array([[c.data.metrics[n] for n in names] for c in children])
        expected = hypervolume(values, ["maximize", "minimize"], [ref[n] for n in names])
        assert parent.data.metrics["hypervolume_final"] == pytest.approx(expected)
        assert client.get_metric_history(parent.info.run_id, "hypervolume")[-1].value == pytest.approx(expected)
        assert s["hypervolume"] == pytest.approx(expected)

    # abacus compare uses the same point, so its numbers and order are MLflow's
    result = compare([str(tmp_path / "runs" / "s-random"), str(tmp_path / "runs" / "s-tpe")], uri, tmp_path / "cmp")
    assert result["reference_point"] == ref and result["problem"] == a["problem"]
    hv = {r["parent_run_id"]: r["hypervolume"] for r in result["experiments"]}
    mlflow_hv = {p.info.run_id: p.data.metrics["hypervolume_final"] for p in (pa, pb)}
    assert hv == pytest.approx(mlflow_hv)
    assert sorted(hv, key=hv.get) == sorted(mlflow_hv, key=mlflow_hv.get)
    # the comparison run: one child per search, the same metric keys on each
    cmp_children = client.search_runs([client.get_run(result["compare_run_id"]).info.experiment_id],
                                      f"tags.`mlflow.parentRunId` = '{result['compare_run_id']}'")
    assert len({c.data.params["search"] for c in cmp_children}) == 2
    assert len(cmp_children) == 2 and all(set(c.data.metrics) == {"hypervolume", "share_of_best", "front_size", "trials"} for c in cmp_children)
    assert sorted(c.data.metrics["hypervolume"] for c in cmp_children) == pytest.approx(sorted(mlflow_hv.values()))
    fronts = (tmp_path / "cmp" / "fronts.csv").read_text().splitlines()
    assert "np.float64" not in "".join(fronts) and float(fronts[1].split(",")[3]) > 0

    # another problem (another device) is never put on the same axis without an explicit point
    c = _search(tmp_path, "s-other", uri, strategy={"name": "random"}, seed=1, **{"hardware.device": "zcu102"})
    assert c["problem"] != a["problem"]
    with pytest.raises(RunLookupError, match="expected searches of one problem.*--ref"):
        compare([str(tmp_path / "runs" / "s-random"), str(tmp_path / "runs" / "s-other")], uri, tmp_path / "cmp2")
    forced = compare([str(tmp_path / "runs" / "s-random"), str(tmp_path / "runs" / "s-other")], uri, tmp_path / "cmp3",
                     reference={"val_accuracy": 0.0, "energy_mj": 1.0})
    assert forced["problem"] is None and json.loads((tmp_path / "cmp3" / "compare.json").read_text())["reference_point"]["energy_mj"] == 1.0


def test_detection_and_sr_quality_objectives_declare_their_floor():
    """A detection search needs no hand-set reference: mAP's floor is 0, like PSNR's; an unknown
    metric still declares nothing (and is refused before the search unless configured)."""
    from search.problem import declared_bound, undeclarable

    for name in ("val_map", "val_map50", "best_val_map", "val_psnr", "val_ssim"):
        assert declared_bound(name, 10)[0] == 0.0
    assert declared_bound("val_made_up", 10) is None
    assert undeclarable(["val_map", "val_made_up"], {}) == ["val_made_up"]
