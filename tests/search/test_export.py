"""``abacus export``: a trial's artifacts in MLflow -> a directory that rebuilds the same network."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

import hw_cost
import supernets
from search.config import load_config
from search.engine import _flatten
from search.export import export, export_command, pack_trial_artifacts, save_trial_artifacts, unpack_trial_artifacts
from search.runs import RunLookupError
from search.tracking import Tracker
from spaces import get_space
from supernets.export import load_exported

TASK = {"input_shape": (1, 8, 8), "num_classes": 10}
SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1, "stage3.blocks": 1}


@pytest.fixture()
def logged(tmp_path, monkeypatch):
    """A search with one trained trial whose artifacts were logged as the driver will log them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = get_space("addernet-resnet")
    arch = space.complete({**SMALL, "stage2.op": "adder", "stage3.op": "winograd_adder"})
    torch.manual_seed(1)
    model = supernets.build(space, arch, **TASK)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.train()
    model(torch.randn(8, 1, 8, 8))  # moves BN running statistics
    model.eval()

    cfg = load_config(None, name="exp", space="addernet-resnet", **{"hardware.style": "dataflow"})
    tracker = Tracker(uri, cfg.experiment_name)
    parent = tracker.start_parent("exp", params=_flatten(cfg.model_dump(mode="json")), tags={})
    report = hw_cost.estimate(model, (1, *TASK["input_shape"]), device="zcu104", style="dataflow")
    cost = {k: float(v) for k, v in report.to_dict().items() if isinstance(v, (int, float, bool))}
    rid = tracker.log_trial(0, arch, {"arch_id": space.arch_id(arch)}, {"val_accuracy": 0.5, **cost}, [], "complete")
    trial_dir = tmp_path / "runs" / "exp" / "trials" / "0"
    save_trial_artifacts(model, arch, space, TASK, trial_dir)
    tracker.client.log_artifacts(rid, str(trial_dir))
    tracker.set_tag(rid, "pareto", "true")
    empty = tracker.log_trial(1, arch, {"arch_id": "x"}, {}, [], "fail", "boom")
    tracker.finish_parent()
    return uri, model, rid, parent, empty, cost


def test_export_round_trip(logged, tmp_path):
    uri, model, rid, _, _, cost = logged
    out = export(rid, tmp_path / "exported", uri)
    assert {"arch.json", "weights.safetensors", "weights.pt", "cost.json"} <= {p.name for p in out.iterdir()}
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_exported(out)(x), model(x))
        assert torch.equal(load_exported(out, prefer="torch")(x), model(x))
    state = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items() if torch.is_tensor(v))

    c = json.loads((out / "cost.json").read_text())
    assert c["run_id"] == rid and c["trial"] == 0 and c["hardware"]["style"] == "dataflow"
    assert c["recorded"]["energy_mj"] == pytest.approx(cost["energy_mj"]) and "val_accuracy" not in c["recorded"]
    assert c["evaluation"]["val_accuracy"] == 0.5
    # the recomputed full report (same settings as the search) agrees with what the search recorded
    assert c["report"]["energy_mj"] == pytest.approx(cost["energy_mj"], rel=1e-9)
    assert c["report"]["latency_ms"] == pytest.approx(cost["latency_ms"], rel=1e-9)


def test_export_user_errors(logged, tmp_path):
    uri, _, rid, parent, empty, _ = logged
    with pytest.raises(RunLookupError, match=rf"found the search run {parent}.*{rid}"):
        export(parent, tmp_path / "a", uri)
    with pytest.raises(RunLookupError, match="expected model artifacts.*trial state fail"):
        export(empty, tmp_path / "b", uri)
    with pytest.raises(RunLookupError, match="found no run 'deadbeef'"):
        export("deadbeef", tmp_path / "c", uri)

    app = typer.Typer()
    app.command("export")(export_command)
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["export", empty, "--out", str(tmp_path / "d"), "--tracking-uri", uri])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and res.output.startswith("abacus: error:")
    res = CliRunner().invoke(app, ["export", rid, "--out", str(tmp_path / "e"), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "weights.safetensors").is_file()


def test_pack_and_unpack_give_the_same_directory(tmp_path):
    space = get_space("addernet-resnet")
    arch = space.complete(SMALL)
    model = supernets.build(space, arch, **TASK).eval()
    files = pack_trial_artifacts(model, arch, "addernet-resnet", TASK)
    assert set(files) == {"arch.json", "weights.safetensors", "weights.pt"}
    unpack_trial_artifacts(files, tmp_path / "t")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "t")(x), model(x))
    with pytest.raises(ValueError, match="plain file name"):
        unpack_trial_artifacts({"../evil": b""}, tmp_path / "t")


def test_export_accepts_search_trial_prefix_and_arch_id(logged, tmp_path):
    from search.run_ref import resolve_trial
    from search.runs import client_for

    uri, _, rid, parent, empty, _ = logged
    client = client_for(uri)
    arch_id = client.get_run(rid).data.tags["arch_id"]
    assert resolve_trial(client, "exp:0", uri) == rid
    assert resolve_trial(client, "exp:1", uri) == empty
    assert resolve_trial(client, rid[:8], uri) == rid
    assert resolve_trial(client, arch_id, uri) == rid
    assert resolve_trial(client, rid, uri) == rid
    with pytest.raises(RunLookupError, match="expected trial 7"):
        resolve_trial(client, "exp:7", uri)
    with pytest.raises(RunLookupError, match="expected SEARCH:TRIAL"):
        resolve_trial(client, "zzzzzz", uri)
    with pytest.raises(RunLookupError, match="expected an MLflow experiment or a run directory named 'nope'"):
        resolve_trial(client, "nope:1", uri)
    app = typer.Typer()
    app.command("export")(export_command)
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["export", "exp:0", "--out", str(tmp_path / "by-trial"), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "by-trial" / "cost.json").read_text())["run_id"] == rid


def test_exported_digits_model_classifies_raw_inputs(tmp_path):
    """Trained by the search's worker on digits, exported, loaded: raw images (values 0..16) are
    classified as well as the normalised validation set was during the search."""
    import numpy as np
    from sklearn.datasets import load_digits

    from evaluators.data.digits import DigitsDataModule
    from search.worker import TrialSpec, run_trial

    space = get_space("addernet-resnet")
    arch = space.complete({**SMALL, "stage1.op": "conv", "stage2.op": "conv", "stage3.op": "conv"})
    spec = TrialSpec(number=0, space=space, arch=arch, data="digits", data_kwargs={}, epochs=4, lr=0.05, optimizer="sgd",
                     weight_decay=5e-4, batch_size=64, seed=3, save_artifacts=True)
    result = run_trial(spec)
    assert result.state == "complete", result.reason
    out = unpack_trial_artifacts(result.artifacts, tmp_path / "model")
    record = json.loads((out / "arch.json").read_text())["preprocessing"]
    assert record["class_names"] == [str(i) for i in range(10)] and record["scale"] == 1 / 16 and record["input_shape"] == [1, 8, 8]

    dm = DigitsDataModule(seed=spec.split_seed)  # the worker splits with the search's seed, not the trial's
    dm.setup()
    bunch = load_digits()
    raw = torch.from_numpy(bunch.images[dm.val_indices].astype(np.float32)).unsqueeze(1)  # values 0..16, as shipped
    labels = torch.from_numpy(bunch.target[dm.val_indices])
    model = load_exported(out)
    with torch.no_grad():
        accuracy = (model(raw).argmax(1) == labels).float().mean().item()
        bare = (load_exported(out, raw_inputs=False)(raw).argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(result.metrics["val_accuracy"], abs=1.5 / len(labels))
    assert accuracy > 0.5 and model.class_names[int(model(raw[:1]).argmax())] in model.class_names
    assert record["mean"] == [pytest.approx(dm.mean)] and record["std"] == [pytest.approx(dm.std)]
    assert bare < accuracy  # without the recorded normalisation the same weights do worse
