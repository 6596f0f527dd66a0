"""Paired translation through the search: FID minimised with early stopping, sizes in MB as
objectives, the FID extractor recorded with the problem, and compare refusing other extractors."""

from __future__ import annotations

import pytest
import torch
import yaml

from search.config import load_config
from search.errors import ConfigError

BODY_OFF = {f"body.b{i}.keep": False for i in range(2, 7)}
TINY = {
    "name": "tiny-gan",
    "space": "gan-generator",
    "space_options": {"base_width": 4},
    "fixed": {**BODY_OFF, "unet.skip1": False, "unet.skip2": False,
              **{f"{c}.family": "conv" for c in ("enc.d1", "enc.d2", "body.b1", "dec.u1", "dec.u2")}},
    "objectives": [{"name": "val_fid", "direction": "minimize"}, {"name": "size_mb", "direction": "minimize"}],
    "reference_point": {"val_fid": 50.0},
    "evaluator": {"data": "skimage-edges", "optimizer": "adam", "lr": 0.0002, "weight_decay": 0.0, "batch_size": 4,
                  "options": {"kid_subset_size": 8},
                  "data_kwargs": {"images": ["camera.png", "coins.png", "moon.png", "page.png"], "max_side": 64,
                                  "crop_size": 16, "pairs_per_epoch": 8, "val_crops_per_image": 4}},
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


def test_translation_objectives_and_options_are_checked(tmp_path):
    cfg = load_config(_write(tmp_path, TINY))
    assert cfg.objective_names == ["val_fid", "size_mb"]
    load_config(_write(tmp_path, {**TINY, "objectives": [{"name": "val_kid", "direction": "minimize"},
                                                         {"name": "size_mib", "direction": "minimize"}],
                                  "reference_point": {"val_kid": 1.0}}))
    with pytest.raises(ConfigError, match="translation task"):
        load_config(_write(tmp_path, {**TINY, "objectives": [{"name": "val_psnr", "direction": "maximize"}]}))
    with pytest.raises(ConfigError, match="an option of the translation evaluator") as info:
        load_config(_write(tmp_path, {**TINY, "evaluator": {**TINY["evaluator"], "options": {"teacher_epochs": 3}}}))
    assert "\n" not in str(info.value)


def test_tiny_gan_search_records_fid_sizes_and_the_extractor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(_write(tmp_path, {**TINY, "mlflow": {"tracking_uri": uri}}))
    from search.engine import SearchEngine

    summary = SearchEngine(cfg, progress=False).run()
    assert summary["complete"] >= 1, summary["failures"]
    assert summary["front"]

    from mlflow.tracking import MlflowClient

    from evaluators.fid import RandomConvFeatures, extractor_identity

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny-gan")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = [r for r in runs if r.data.tags.get("abacus.role") == "search"][0]
    assert parent.data.tags["abacus.metric.fid.extractor"] == extractor_identity(RandomConvFeatures())
    done = [r for r in runs if r.data.tags.get("state") == "complete"]
    for r in done:
        m = r.data.metrics
        assert {"val_fid", "best_val_fid", "val_kid", "size_mb", "size_mib", "file_mb", "energy_mj"} <= set(m)
        assert m["size_mib"] == pytest.approx(m["size_mb"] * 1e6 / 2 ** 20)
        assert len(client.get_metric_history(r.info.run_id, "val_fid")) >= 1


def test_compare_refuses_values_of_different_extractors():
    from search.compare import _check_objectives
    from search.runs import RunLookupError, SearchRecord

    def rec(label, extractor):
        return SearchRecord(label, "experiment", "", "0", label, [("val_fid", "minimize")],
                            tags={"abacus.metric.fid.extractor": extractor} if extractor else {})

    _check_objectives([rec("a", "random-cnn-v1:aa"), rec("b", "random-cnn-v1:aa")])
    with pytest.raises(RunLookupError, match="fid.extractor differs") as info:
        _check_objectives([rec("a", "random-cnn-v1:aa"), rec("b", "inception:bb")])
    assert "not comparable" in str(info.value)
    with pytest.raises(RunLookupError, match="none recorded"):
        _check_objectives([rec("a", "random-cnn-v1:aa"), rec("b", None)])


def test_rungs_keep_the_lowest_fid_as_the_best():
    from search.schedulers import rung_values

    history = [{"epoch": 0.0, "val_fid": 5.0}, {"epoch": 1.0, "val_fid": 7.0}, {"epoch": 2.0, "val_fid": 4.0}]
    rows = rung_values(["best_val_fid", "size_mb"], {"size_mb": 0.5}, history, minimize=("val_fid",))
    assert [v for _, v in rows] == [[5.0, 0.5], [5.0, 0.5], [4.0, 0.5]]
    acc = rung_values(["best_val_accuracy"], {}, [{"val_accuracy": 0.5}, {"val_accuracy": 0.4}])
    assert [v for _, v in acc] == [[0.5], [0.5]]
