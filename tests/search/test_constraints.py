"""Hardware constraints are checked before training: violators are recorded, never trained."""

from __future__ import annotations

import pytest

from search.config import load_config
from search.engine import SearchEngine


def test_lut_constraint_trains_no_infeasible_candidate(tmp_path, monkeypatch):
    import search.worker as worker

    trained = []
    real = worker.run_trial

    def spy(spec):
        trained.append(spec.static_metrics["lut"])
        return real(spec)

    monkeypatch.setattr("search.executors.run_trial", spy)
    monkeypatch.chdir(tmp_path)
    cap = 0.5 * 230_400  # half the ZCU104's LUTs
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"], name="lutcap", space="addernet-resnet",
                      fixed={"stage1.blocks": 1, "stage2.blocks": 1, "stage3.blocks": 1, "manidp.enabled": False},
                      constraints=["lut <= 0.5 * device"], budget={"trials": 10, "epochs": 1},
                      strategy={"name": "random"}, executor="local", save_weights=False)
    summary = SearchEngine(cfg, progress=False).run()
    assert summary["infeasible"] >= 1, "the sampled architectures should include some over the cap"
    assert trained and all(lut <= cap for lut in trained), "no candidate over the LUT cap was trained"
    assert len(trained) == summary["complete"] + summary["failed"]
    for f in summary["failures"]:
        if f["state"] == "infeasible":
            assert "lut" in f["reason"]


def test_constraint_on_an_unknown_field_is_a_config_error(tmp_path):
    from search.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("name: x\nspace: addernet-resnet\nconstraints: ['luts <= 5']\n")
    with pytest.raises(ConfigError, match="constraints.0"):
        load_config(p)
