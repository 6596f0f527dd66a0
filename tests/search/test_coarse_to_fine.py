"""Coarse-to-fine one-shot search (search/coarse_to_fine.py): stage isolation, per-stage records in
MLflow, the last stage's front as the search's front, and the config checks.

The mechanism is generic over groups of dimensions; these tests drive it on the small
``addernet-resnet`` space with label patterns (blocks = path, op = operator, width = channel).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from search.config import load_config
from search.errors import ConfigError

PATH, OP, WIDTH = [f"stage{s}.blocks" for s in (1, 2, 3)], [f"stage{s}.op" for s in (1, 2, 3)], [f"stage{s}.width" for s in (1, 2, 3)]
STAGES = [{"name": "path", "dims": ["stage*.blocks"], "trials": 6},
          {"name": "operator", "dims": ["stage*.op"], "trials": 5},
          {"name": "channel", "dims": ["stage*.width"], "trials": 5}]


def _cfg(tmp_path, stages=STAGES, name="c2f", **over) -> dict:
    cfg = {"name": name, "space": "addernet-resnet",
           "restrict": {**{k: ["conv", "binary"] for k in OP}, **{k: [0.25, 0.5] for k in WIDTH}, **{k: [1, 2] for k in PATH}},
           "fixed": {f"stage{s}.bits": 32 for s in (1, 2, 3)},
           "objectives": [{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
           "strategy": {"name": "random"},
           "oneshot": {"epochs": 1, "recalibration_batches": 2, "candidates_per_task": 4},
           "coarse_to_fine": {"stages": stages},
           "evaluator": {"data": "digits", "batch_size": 64}, "executor": "local", "workers": 1,
           "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}, "out": str(tmp_path / name), "save_weights": False}
    cfg.update(over)
    return cfg


def _load(tmp_path, cfg: dict, sets=()):
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(str(path), list(sets))


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory):
    """One three-stage search with a retrain of its front (the module's shared run)."""
    from search.engine import SearchEngine

    tmp = tmp_path_factory.mktemp("c2f")
    cfg = _load(tmp, _cfg(tmp, retrain={"epochs": 1}))
    engine = SearchEngine(cfg, progress=False)
    summary = engine.run()
    return tmp, cfg, engine, summary


def _stage(tmp, name: str, i: int) -> dict:
    return json.loads((tmp / name / "stages" / f"{i}-{['path', 'operator', 'channel'][i - 1]}" / "stage.json").read_text())


def test_later_stages_keep_the_recorded_choices(three_stages):
    """Stage isolation by construction: every candidate after stage 1 has stage 1's recorded path,
    every candidate of stage 3 stage 2's recorded operators; each stage's supernet switches only
    its own dimensions."""
    tmp, cfg, engine, summary = three_stages
    path, ops = _stage(tmp, "c2f", 1), _stage(tmp, "c2f", 2)
    assert set(path["chosen"]) == set(PATH) and set(ops["chosen"]) == set(OP)
    assert all(ops["fixed"][k] == v for k, v in path["chosen"].items())
    stage2 = json.loads((tmp / "c2f" / "stages" / "2-operator" / "summary.json").read_text())
    assert stage2["trials"] == 5
    for row in stage2["front"]:
        assert {k: row["arch"][k] for k in PATH} == path["chosen"]
    for rec in engine.records.values():  # the last stage: the search's own trials
        assert {k: rec.arch[k] for k in PATH} == path["chosen"]
        assert {k: rec.arch[k] for k in OP} == ops["chosen"]
    widths = {tuple(rec.arch[k] for k in WIDTH) for rec in engine.records.values()}
    assert len(widths) > 1  # the last stage searched the channels
    meta = json.loads((tmp / "c2f" / "stages" / "1-path" / "supernet" / "supernet.json").read_text())
    assert set(meta["fixed"]) >= set(OP) | set(WIDTH) and not set(meta["fixed"]) & set(PATH)


def test_changing_later_stages_does_not_change_the_recorded_path(tmp_path, three_stages):
    """The same stage 1 followed by other operator settings (another strategy, budget and supernet
    epochs, and no channel stage) records the same best path."""
    from search.engine import SearchEngine

    tmp, _, _, _ = three_stages
    other = [STAGES[0], {"name": "operator", "dims": ["stage*.op"], "trials": 2, "epochs": 2, "strategy": {"name": "qmc"}}]
    cfg = _load(tmp_path, _cfg(tmp_path, stages=other, name="c2f-other"))
    SearchEngine(cfg, progress=False).run()
    first = _stage(tmp, "c2f", 1)
    again = json.loads((tmp_path / "c2f-other" / "stages" / "1-path" / "stage.json").read_text())
    assert again["chosen"] == first["chosen"] and again["chosen_trial"] == first["chosen_trial"]


def test_stages_and_front_are_in_mlflow(three_stages):
    from mlflow.tracking import MlflowClient

    tmp, cfg, engine, summary = three_stages
    assert summary["front"] and summary["retrained"]
    client = MlflowClient(summary["tracking_uri"])
    runs = client.search_runs([summary["mlflow_experiment_id"]], max_results=1000)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["abacus.role"] == "search" and parent.data.tags["abacus.stage"] == "channel"
    assert {f"stage_wall_time_s.{s}" for s in ("path", "operator", "channel")} <= set(parent.data.metrics)
    stage_runs = {r.data.tags["abacus.stage"]: r for r in runs if r.data.tags.get("abacus.role") == "stage"}
    assert set(stage_runs) == {"path", "operator"}
    for name, run in stage_runs.items():
        assert run.data.tags["mlflow.parentRunId"] == summary["parent_run_id"]
        assert run.data.metrics["front_size"] >= 1 and run.data.metrics["stage_wall_time_s"] > 0
        assert json.loads(run.data.tags["stage_choice"])
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id and r.data.tags.get("abacus.role") == "trial"]
        assert trials and all(r.data.tags["stage"] == name for r in trials)
        sn = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id and r.data.tags.get("abacus.role") == "supernet"]
        assert len(sn) == 1 and sn[0].data.tags["abacus.stage"] == name
    own = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags.get("abacus.role") == "trial"]
    assert len(own) == 5 and all(r.data.tags["stage"] == "channel" for r in own)
    front = {r.data.tags["trial_number"] for r in own if r.data.tags.get("pareto") == "true"}
    assert front == {str(row["trial"]) for row in summary["front"]}
    stages = json.loads((tmp / "c2f" / "stages.json").read_text())
    assert [s["stage"] for s in stages] == ["path", "operator", "channel"] and all(s["wall_time_s"] > 0 for s in stages)


def test_warm_start_copies_the_previous_stage_weights(three_stages):
    import torch

    from evaluators.supernet import load_supernet
    from search.coarse_to_fine import warm_start

    tmp, *_ = three_stages
    prev = tmp / "c2f" / "stages" / "1-path" / "supernet"
    sn = load_supernet(tmp / "c2f" / "stages" / "2-operator" / "supernet")
    for p in sn.parameters():
        torch.nn.init.zeros_(p)
    assert warm_start(sn, prev) > 0
    saved = torch.load(prev / "supernet.pt", weights_only=True)
    same = [k for k, v in sn.state_dict().items() if k in saved and isinstance(v, torch.Tensor) and v.shape == saved[k].shape]
    assert same and all(torch.equal(sn.state_dict()[k], saved[k]) for k in same)


def test_groups_resolve_from_the_space_tags():
    """``group:NAME`` names the dimensions a space tags with NAME: for the GAN generator exactly
    its own path / operator / channel groups."""
    from search.coarse_to_fine import stage_labels
    from spaces import get_space
    from spaces.gan_generator import dimension_groups

    for name in ("gan-generator", "gan-generator-sr"):
        space = get_space(name)
        for group, labels in dimension_groups(space).items():
            assert stage_labels(space, [f"group:{group}"]) == labels and labels
    space = get_space("gan-generator").restricted({"body.b2.keep": [True]})
    assert "body.b2.keep" in stage_labels(space, ["group:path"])
    space = get_space("addernet-resnet")
    assert stage_labels(space, ["group:path"]) == [] and stage_labels(space, ["stage*.op", "stage1.width"]) == [*OP[:1], "stage1.width", *OP[1:]]


def test_selection_respects_limits_and_direction():
    from search.coarse_to_fine import select
    from search.config import Objective
    from search.engine import TrialRecord

    objs = [Objective(name="fid", direction="minimize"), Objective(name="size_mb", direction="minimize")]
    recs = [TrialRecord(0, {}, "a", "complete", {"fid": 10.0, "size_mb": 5.0}),
            TrialRecord(1, {}, "b", "complete", {"fid": 20.0, "size_mb": 1.0}),
            TrialRecord(2, {}, "c", "fail", {}),
            TrialRecord(3, {}, "d", "complete", {"fid": 20.0, "size_mb": 0.5})]
    assert select(recs, objs, None, {})[0].number == 0
    best, within = select(recs, objs, None, {"size_mb": 2.0})
    assert best.number == 3 and within  # tie on fid broken by size
    best, within = select(recs, objs, "size_mb", {"size_mb": 0.1})
    assert best.number == 3 and not within


@pytest.mark.parametrize("over,key", [
    ({"oneshot": None}, "coarse_to_fine"),
    ({"coarse_to_fine": {"stages": [{"name": "p", "dims": ["nothing.*"], "trials": 2}]}}, "coarse_to_fine.stages.0.dims"),
    ({"coarse_to_fine": {"stages": [{"name": "p", "dims": ["group:path"], "trials": 2}]}}, "coarse_to_fine.stages.0.dims"),
    ({"coarse_to_fine": {"stages": [STAGES[0], {"name": "q", "dims": ["stage1.*"], "trials": 2}]}}, "coarse_to_fine.stages.1.dims"),
    ({"coarse_to_fine": {"stages": [STAGES[0], {**STAGES[1], "name": "path"}]}}, "coarse_to_fine.stages.1.name"),
    ({"coarse_to_fine": {"stages": STAGES, "select_by": "val_loss"}}, "coarse_to_fine.select_by"),
    ({"coarse_to_fine": {"stages": STAGES, "limits": {"colour": 1}}}, "coarse_to_fine.limits.colour"),
    ({"coarse_to_fine": {"stages": STAGES, "start_from": "teacher"}}, "coarse_to_fine.start_from"),
    ({"coarse_to_fine": {"stages": [{**STAGES[0], "strategy": {"name": "staged"}}]}}, "coarse_to_fine.stages.0.strategy.name"),
    ({"coarse_to_fine": {"stages": []}}, "coarse_to_fine.stages"),
    ({"coarse_to_fine": {"stages": [{**STAGES[0], "trials": 0}]}}, "coarse_to_fine.stages.0.trials"),
    ({"budget": {"time_s": 60}}, "budget.time_s"),
    ({"executor": "ray", "workers": 2}, "oneshot.workers"),
])
def test_bad_coarse_to_fine_configs_name_the_key(tmp_path, over, key):
    with pytest.raises(ConfigError, match=f"'{key}'".replace(".", r"\.")):
        _load(tmp_path, _cfg(tmp_path, **over))


def test_bad_config_on_the_cli_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch):
    from search.cli import app

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, coarse_to_fine={"stages": [STAGES[0], {"name": "q", "dims": ["stage1.*"], "trials": 2}]})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    before = sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(app, ["search", "c.yaml", "--no-progress"])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "coarse_to_fine.stages.1.dims" in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_the_last_stage_sets_the_search_budget(tmp_path):
    cfg = _load(tmp_path, _cfg(tmp_path))
    assert cfg.budget.trials == STAGES[-1]["trials"]
