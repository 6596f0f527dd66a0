"""``supernets.export``: a trained network survives save -> load bit for bit, without search machinery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import supernets
from spaces import SearchSpace, get_space
from supernets.export import load_exported, save_exported

ROOT = Path(__file__).resolve().parents[2]
TASK = {"input_shape": (1, 8, 8), "num_classes": 10}
SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1, "stage3.blocks": 1}


def _trained(arch_overrides: dict) -> tuple[torch.nn.Module, dict]:
    """A small network with weights, BN statistics and op schedules all moved off their init."""
    space = get_space("addernet-resnet")
    arch = space.complete({**SMALL, **arch_overrides})
    torch.manual_seed(0)
    model = supernets.build(space, arch, **TASK)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    for m in model.modules():  # extra state: schedules that live outside tensors
        if hasattr(m, "set_progress"):
            m.set_progress(0.5)
    return model.eval(), arch


@pytest.mark.parametrize("prefer", ["safetensors", "torch"])
def test_round_trip_gives_identical_outputs(tmp_path, prefer):
    model, arch = _trained({"stage1.op": "binary", "stage2.op": "winograd_adder", "stage3.op": "adder", "stage3.bits": 8})
    extra = {k: v for k, v in model.state_dict().items() if k.endswith("_extra_state")}
    assert extra, "the test network should carry non-tensor extra state"
    save_exported(model, arch, "addernet-resnet", TASK, tmp_path)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        loaded = load_exported(tmp_path, prefer=prefer)
        got = loaded(x)
    assert not loaded.training
    assert torch.equal(got, expected)
    for k, v in loaded.state_dict().items():
        ref = model.state_dict()[k]
        assert (torch.equal(v, ref) if torch.is_tensor(v) else v == ref), k
    # a freshly built network differs, so equality above is not trivial
    with torch.no_grad():
        fresh = supernets.build("addernet-resnet", arch, **TASK).eval()(x)
    assert not torch.equal(fresh, expected)


def test_files_are_safe_formats(tmp_path):
    model, arch = _trained({"stage2.op": "winograd_adder"})
    save_exported(model, arch, "addernet-resnet", TASK, tmp_path)
    record = json.loads((tmp_path / "arch.json").read_text())
    assert record["space"] == "addernet-resnet" and record["arch"] == arch and record["task"] == {"input_shape": [1, 8, 8], "num_classes": 10}
    assert len(record["arch_id"]) == 12
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "weights.safetensors")
    assert set(tensors) == {k for k, v in model.state_dict().items() if torch.is_tensor(v)}


def test_unregistered_space_rebuilds_from_its_saved_definition(tmp_path):
    base = get_space("addernet-resnet")
    private = SearchSpace.from_dict({**base.to_dict(), "name": "driver-only-space"})
    model, arch = _trained({})
    save_exported(model, arch, private, TASK, tmp_path)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path)(x), model(x))


def test_bad_directory_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="arch.json"):
        load_exported(tmp_path)
    (tmp_path / "arch.json").write_text("{not json")
    with pytest.raises(ValueError, match="expected JSON"):
        load_exported(tmp_path)
    (tmp_path / "arch.json").write_text(json.dumps({"space": "addernet-resnet", "arch": {}, "task": TASK}))
    with pytest.raises(FileNotFoundError, match="weights"):
        load_exported(tmp_path)


def test_loading_needs_no_search_machinery(tmp_path):
    model, arch = _trained({"stage1.op": "adder"})
    save_exported(model, arch, "addernet-resnet", TASK, tmp_path)
    code = (
        "import sys, torch; from supernets.export import load_exported\n"
        f"m = load_exported({str(tmp_path)!r}); m(torch.zeros(1, 1, 8, 8))\n"
        "print(sorted(n for n in ('search', 'optuna', 'ray', 'mlflow', 'hw_cost', 'evaluators', 'pytorch_lightning') if n in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
