"""One split per search: every trial and every retrain sees the same validation images; the front
is reported with held-out test values; the split is recorded on the parent run and checked on resume;
data_kwargs that clash with the engine are a config error."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import evaluators
from evaluators.data.splits import fingerprint
from search.config import load_config
from search.engine import SearchEngine
from search.errors import ConfigError

TINY = {
    "name": "split",
    "space": "addernet-resnet",
    "fixed": {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
              "stage3.blocks": 1, "stage1.bits": 32, "stage2.bits": 32, "stage3.bits": 32, "manidp.enabled": False},
    "budget": {"trials": 2, "epochs": 1},
    "strategy": {"name": "random"},
    "executor": "local",
    "save_weights": False,
    "seed": 7,
}


def _cfg(tmp_path, **extra):
    return load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"], **{**TINY, "out": str(tmp_path / "run"), **extra})


def test_trials_and_retrains_see_one_validation_split_and_the_front_reports_test_values(tmp_path, monkeypatch):
    seen = []
    real = evaluators.evaluate

    def spy(model, *, datamodule, seed, test=False, **kw):
        seen.append({"seed": seed, "val": datamodule.val_indices.copy(), "test": test, "train_size": len(datamodule.train_set)})
        return real(model, datamodule=datamodule, seed=seed, test=test, **kw)

    monkeypatch.setattr(evaluators, "evaluate", spy)
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, retrain={"epochs": 1, "seeds": 2})
    engine = SearchEngine(cfg, progress=False)
    summary = engine.run()

    trials, retrains = [s for s in seen if not s["test"]], [s for s in seen if s["test"]]
    assert len(trials) == 2 and len(retrains) == 2 * len(summary["front"]) >= 2
    assert len({s["seed"] for s in seen}) == len(seen), "every run has its own seed (init, order)"
    reference = evaluators.get_datamodule("digits", seed=7)
    reference.setup()
    for s in seen:  # the split follows the search's seed, not the trial's
        assert np.array_equal(s["val"], reference.val_indices)
    assert summary["split"]["val_sha256"] == fingerprint(reference.val_indices.tolist())
    assert summary["split"]["test_size"] == 360 and summary["split"]["split_seed"] == 7

    # what the workers saw is on every child run; the parent carries the split
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    parent = client.get_run(summary["parent_run_id"]).data.tags
    assert parent["split.val_sha256"] == summary["split"]["val_sha256"] and parent["split.split_seed"] == "7"
    children = client.search_runs([summary["mlflow_experiment_id"]], f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    assert len(children) == 2 + len(retrains)
    assert {r.data.tags["split.val_sha256"] for r in children} == {parent["split.val_sha256"]}
    assert {r.data.tags["split.split_seed"] for r in children} == {"7"}

    # test values beside search values, and what selected the front
    assert summary["selected_on"] == "search" and "validation" in summary["selection_note"]
    for row in summary["front"]:
        assert row["test_seeds"] == 2 and 0.0 <= row["test_values"]["test_accuracy"] <= 1.0
        assert len(row["test_per_seed"]["test_accuracy"]) == 2
    rows = list(csv.DictReader(open(tmp_path / "run" / "pareto.csv")))
    assert rows and all(r["selected_on"] == "search" and r["test_accuracy"] and r["val_accuracy"] for r in rows)
    from rich.console import Console

    console = Console(file=io.StringIO(), width=250)
    from search.report import front_table

    console.print(front_table(summary["front"], cfg.objective_names, "front", caption=summary["selection_note"]))
    text = console.file.getvalue()
    assert "val_accuracy (search)" in text and "test_accuracy (retrain)" in text and "selected on" in text
    first = summary["front"][0]
    assert f"{first['test_values']['test_accuracy']:.4g}" in text


def test_retrain_on_train_plus_val_keeps_the_test_split_unseen(tmp_path, monkeypatch):
    seen = []
    real = evaluators.evaluate

    def spy(model, *, datamodule, **kw):
        seen.append((kw.get("test", False), len(datamodule.train_set), datamodule.test_indices.copy()))
        return real(model, datamodule=datamodule, **kw)

    monkeypatch.setattr(evaluators, "evaluate", spy)
    monkeypatch.chdir(tmp_path)
    summary = SearchEngine(_cfg(tmp_path, budget={"trials": 1, "epochs": 1}, retrain={"epochs": 1, "train_on_val": True}), progress=False).run()
    (t0, n_search, test_a), (t1, n_retrain, test_b) = seen
    assert not t0 and t1 and n_retrain == n_search + summary["split"]["val_size"]
    assert np.array_equal(test_a, test_b)


def test_resume_refuses_a_changed_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, budget={"trials": 1, "epochs": 1}, evaluator={"function": "probe_helpers:sleepy"})
    first = SearchEngine(cfg, progress=False).run()
    same = load_config(tmp_path / "run" / "config.yaml", [], out=str(tmp_path / "run"))
    assert SearchEngine(same, progress=False).run(resume=True)["parent_run_id"] == first["parent_run_id"]
    moved = load_config(tmp_path / "run" / "config.yaml", ["evaluator.data_kwargs.val_fraction=0.3"], out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="split recorded on the search's parent run.*val_sha256"):
        SearchEngine(moved, progress=False).run(resume=True)
    reseeded = load_config(tmp_path / "run" / "config.yaml", ["evaluator.split_seed=3"], out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="split_seed"):
        SearchEngine(reseeded, progress=False).run(resume=True)


@pytest.mark.parametrize("key", ["seed", "batch_size", "train_on_val"])
def test_data_kwargs_that_clash_with_the_engine_are_a_config_error(key):
    with pytest.raises(ConfigError, match=rf"evaluator\.data_kwargs\.{key}.*the engine sets it"):
        load_config(None, [f"evaluator.data_kwargs.{key}=0"], **{k: v for k, v in TINY.items() if k != "executor"})


def test_cli_clash_is_one_line_exit_2_and_writes_nothing(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({**TINY, "evaluator": {"data_kwargs": {"seed": 0}}}))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(cfg)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "evaluator.data_kwargs.seed" in lines[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
