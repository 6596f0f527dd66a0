"""Detection end to end on tiny budgets: evaluate (plain, DeFeat with a trained teacher), and a search."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

import evaluators
import supernets
from evaluators.detection import DetectionModule, load_teacher
from evaluators.detection.teacher import ensure_teacher
from spaces import get_space

TINY_DATA = {"train_images": 24, "val_images": 8, "batch_size": 8}
TINY = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
        "stage3.blocks": 1, "fpn.channels": 16, "head.convs": 1}


def _model(**arch):
    space = get_space("detector")
    return supernets.build(space, space.complete({**TINY, **arch}), input_shape=(1, 64, 64), num_classes=10)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "t"
    dm = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    ensure_teacher(path, datamodule=dm, epochs=1, lr=0.01, optimizer="sgd", seed=0)
    return path


def test_evaluate_reports_map_every_epoch():
    rows = []
    dm = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    r = evaluators.evaluate(_model(), datamodule=dm, epochs=2, lr=0.01, reporter=lambda e, m: rows.append((e, m)))
    assert [e for e, _ in rows] == [0, 1]
    assert all(0.0 <= m["val_map"] <= 1.0 and 0.0 <= m["val_map50"] <= 1.0 and "val_loss" in m for _, m in rows)
    assert r["val_map"] == rows[-1][1]["val_map"] and r["best_val_map"] >= r["val_map"]
    assert r["epochs"] == 2 and r["params"] > 0 and r["macs"] > 0 and not math.isnan(r["train_loss"])
    with pytest.raises(TypeError, match="no task options"):
        evaluators.evaluate(torch.nn.Linear(64, 10), data="digits", epochs=1, teacher="x")


@pytest.mark.slow
def test_reporter_can_stop_a_detection_run():
    dm = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    r = evaluators.evaluate(_model(), datamodule=dm, epochs=3, lr=0.01, reporter=lambda e, m: True)
    assert r["stopped_early"] and r["epochs"] == 1


@pytest.mark.slow
def test_teacher_directory_is_an_export_with_its_record(teacher_dir):
    record = json.loads((teacher_dir / "teacher.json").read_text())
    assert record["arch"]["defeat.method"] == "none" and record["epochs"] == 1 and "val_map" in record["metrics"]
    t = load_teacher(teacher_dir)
    assert not t.training and t.fpn_channels == 64
    with pytest.raises(ValueError, match="exported detector directory"):
        load_teacher(teacher_dir.parent / "missing")


@pytest.mark.slow
def test_defeat_trains_the_student_and_adapters_not_the_teacher(teacher_dir):
    teacher = load_teacher(teacher_dir)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _model(**{"defeat.method": "defeat", "defeat.T_bg": 2.0})
    module = DetectionModule(student, teacher, lr=0.01)
    assert {type(a).__name__ for a in module.distill.adapters} == {"Conv2d"}
    assert all(a.out_channels == 64 and a.in_channels == 16 for a in module.distill.adapters)
    assert not any(k.startswith("adapters") for k in student.state_dict())  # adapters are not part of the student
    module.train()
    assert not module.teacher.training
    dm = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    dm.setup()
    images, targets = next(iter(dm.train_dataloader()))
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    loss = module.training_step((images, targets), 0)
    assert torch.isfinite(loss) and logged["train_kd_neck_obj"] > 0 and logged["train_kd_neck_bg"] > 0
    assert logged["train_kd_head_pos"] > 0 and logged["train_kd_head_neg"] > 0
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert all(a.weight.grad is not None for a in module.distill.adapters)
    dm2 = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    r = evaluators.evaluate(_model(**{"defeat.method": "fitnet"}), datamodule=dm2, epochs=1, lr=0.01, teacher=str(teacher_dir))
    assert 0.0 <= r["val_map"] <= 1.0
    assert all(torch.equal(before[k], v) for k, v in load_teacher(teacher_dir).state_dict().items())


def test_distillation_without_a_teacher_is_a_clear_error(tmp_path):
    dm = evaluators.get_datamodule("digits-detection", **TINY_DATA)
    with pytest.raises(ValueError, match="needs a teacher"):
        evaluators.evaluate(_model(**{"defeat.method": "defeat"}), datamodule=dm, epochs=1)
    with pytest.raises(ValueError, match="does not exist"):
        evaluators.evaluate(_model(**{"defeat.method": "defeat"}), datamodule=dm, epochs=1, teacher=str(tmp_path / "none"))


@pytest.mark.slow
def test_tiny_detection_search_records_a_front_and_the_teacher(tmp_path, monkeypatch, teacher_dir):
    from mlflow.tracking import MlflowClient

    from search.config import load_config
    from search.engine import SearchEngine

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {
        "name": "tiny-det", "space": "detector", "executor": "local", "workers": 1,
        "fixed": {**TINY, "stage2.op": "conv", "stage3.op": "conv", "stage1.bits": 32, "defeat.adapter": "conv3x3"},
        "restrict": {"stage1.op": ["conv", "adder"], "defeat.method": ["none", "defeat"]},
        "objectives": [{"name": "val_map", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
        "reference_point": {"val_map": 0.0}, "seed": 0,
        "strategy": {"name": "random"}, "budget": {"trials": 3, "epochs": 1},
        "evaluator": {"data": "digits-detection", "data_kwargs": {k: v for k, v in TINY_DATA.items() if k not in ("batch_size", "seed")},
                      "batch_size": 8, "lr": 0.01, "options": {"teacher": str(teacher_dir)}},
        "mlflow": {"tracking_uri": uri}, "save_weights": False,
    }
    (tmp_path / "det.yaml").write_text(yaml.safe_dump(cfg))
    summary = SearchEngine(load_config(tmp_path / "det.yaml"), progress=False).run()
    assert summary["complete"] == 3, summary["failures"]
    assert summary["front"] and all("val_map" in row["values"] for row in summary["front"])
    assert summary["split"]["val_size"] == TINY_DATA["val_images"] and summary["split"]["val_sha256"]
    client = MlflowClient(uri)
    arts = [a.path for a in client.list_artifacts(summary["parent_run_id"], "evaluator_inputs/teacher")]
    assert any(p.endswith("arch.json") for p in arts) and any(p.endswith("teacher.json") for p in arts)


def test_config_checks_evaluator_options_against_the_task(tmp_path):
    from search.config import load_config
    from search.errors import ConfigError

    base = {"name": "x", "space": "detector", "objectives": [{"name": "val_map", "direction": "maximize"}],
            "evaluator": {"data": "digits-detection", "options": {"teacher": "t", "teacher_epochs": 2}}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(base))
    assert load_config(tmp_path / "ok.yaml").evaluator.options["teacher"] == "t"
    bad = {**base, "evaluator": {"data": "digits-detection", "options": {"techer": "t"}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="evaluator.options.techer"):
        load_config(tmp_path / "bad.yaml")
    cls = {"name": "x", "space": "addernet-resnet", "evaluator": {"data": "digits", "options": {"teacher": "t"}}}
    (tmp_path / "cls.yaml").write_text(yaml.safe_dump(cls))
    with pytest.raises(ConfigError, match="classification"):
        load_config(tmp_path / "cls.yaml")
