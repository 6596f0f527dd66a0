"""Super-resolution through the search: task-aware config checks, a tiny FADN search, export and reload."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from search.config import load_config
from search.errors import ConfigError

TINY_SR = {
    "name": "tiny-sr",
    "space": "edsr-fadn",
    "fixed": {"edsr.scale": 2, "edsr.blocks": 1, "edsr.channels": 8, "edsr.op": "conv", "edsr.bits": 32, "fadn.enabled": True},
    "objectives": [{"name": "val_psnr", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
    "evaluator": {"data": "skimage-sr", "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "batch_size": 8,
                  "data_kwargs": {"patch_size": 8, "patches_per_epoch": 16, "val_patch_size": 16, "val_patches_per_image": 2}},
    "budget": {"trials": 2, "epochs": 2},
    "scheduler": {"name": "mo-asha", "min_epochs": 1},
    "strategy": {"name": "random"},
    "executor": "local",
    "workers": 1,
}


def _write(tmp_path, cfg) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_objectives_are_checked_against_the_data_task(tmp_path):
    cfg = load_config(_write(tmp_path, TINY_SR))
    assert cfg.objective_names == ["val_psnr", "energy_mj"]
    load_config(_write(tmp_path, {**TINY_SR, "objectives": [{"name": "val_ssim", "direction": "maximize"}],
                                  "scheduler": {"name": "median"}}))
    with pytest.raises(ConfigError, match="superres task") as info:
        load_config(_write(tmp_path, {**TINY_SR, "objectives": [{"name": "val_accuracy", "direction": "maximize"}]}))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="classification task"):
        load_config(_write(tmp_path, {**TINY_SR, "evaluator": {"data": "digits"}}))


def test_tiny_fadn_search_records_measured_costs_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(_write(tmp_path, {**TINY_SR, "mlflow": {"tracking_uri": uri}}))
    from search.engine import SearchEngine

    summary = SearchEngine(cfg, progress=False).run()
    assert summary["complete"] + summary["failed"] + summary.get("pruned", 0) + summary["infeasible"] == 2
    assert summary["complete"] >= 1, summary["failures"]
    assert summary["front"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny-sr")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    done = [r for r in runs if r.data.tags.get("state") == "complete"]
    assert done
    for r in done:
        assert {"val_psnr", "val_ssim", "best_val_psnr", "energy_mj", "val_cost_ratio"} <= set(r.data.metrics)
        assert r.data.tags["cost_source"] == "measured"       # FADN is costed on its measured branch mix
        assert len(client.get_metric_history(r.info.run_id, "val_psnr")) >= 1
    front = [r for r in done if r.data.tags.get("pareto") == "true"]
    assert front

    from search.export import export
    from supernets.export import load_exported

    out = export(front[0].info.run_id, tmp_path / "exported", uri)
    cost = json.loads((out / "cost.json").read_text())
    assert cost["report"] is not None, cost.get("report_error")
    assert "val_psnr" in cost["evaluation"] and "best_val_psnr" in cost["evaluation"]
    model = load_exported(out)
    assert model.body[0].measured                           # the measurement travelled with the weights
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
