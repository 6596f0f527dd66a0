"""`abacus cost`: a ResNet-20 explained on two boards, JSON for scripts, bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _abacus(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_resnet20_on_two_boards_table_and_json(tmp_path):
    reports = {}
    for board in ("zcu104", "pynq-z2"):
        res = _abacus("cost", "--space", "addernet-resnet", "--arch", "resnet20-adder", "--device", board,
                      "--input-shape", "3,32,32", "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        reports[board] = json.loads(res.stdout)
    for rep in reports.values():
        assert rep["energy_mj"] > 0 and rep["latency_ms"] > 0 and rep["uncosted"] == []
        assert any(r["op"] == "adder_conv" for r in rep["rows"])
    # the small Zynq-7020 has far fewer LUTs: its overlay is smaller and slower
    assert reports["pynq-z2"]["lut"] < reports["zcu104"]["lut"]
    assert reports["pynq-z2"]["latency_ms"] > reports["zcu104"]["latency_ms"]
    table = _abacus("cost", "--space", "addernet-resnet", "--arch", '{"stage1.op": "conv", "stage2.op": "adder"}', cwd=tmp_path)
    assert table.returncode == 0
    for needle in ("layer", "bound", "blocks.0.conv1", "adder_conv", "energy"):
        assert needle in table.stdout


def test_cost_bad_input_is_one_line_exit_2(tmp_path):
    for args, needle in [
        (("cost", "--space", "addernet-resnet", "--arch", "{not json"), "--arch"),
        (("cost", "--space", "addernet-resnet", "--arch", '{"stage1.op": "fpga"}'), "stage1.op"),
        (("cost", "--space", "addernet-resnet", "--device", "zcu999"), "--device"),
        (("cost", "--space", "nope"), "unknown space"),
        (("cost", "--space", "addernet-resnet", "--input-shape", "8,8"), "--input-shape"),
    ]:
        res = _abacus(*args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr, res.stderr


def test_cost_of_an_exported_model(tmp_path):
    import spaces
    import supernets

    space = spaces.get_space("addernet-resnet")
    arch = space.preset("resnet20-adder")
    model = supernets.build("addernet-resnet", arch, input_shape=(1, 8, 8), num_classes=10)
    supernets.save_exported(model, arch, "addernet-resnet", {"input_shape": (1, 8, 8), "num_classes": 10}, tmp_path / "m")
    res = _abacus("cost", "--model", str(tmp_path / "m"), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    direct = _abacus("cost", "--space", "addernet-resnet", "--arch", "resnet20-adder", "--json", cwd=tmp_path)
    assert json.loads(res.stdout)["energy_mj"] == json.loads(direct.stdout)["energy_mj"]


def test_cost_gives_the_search_numbers_with_space_options(tmp_path):
    """`abacus cost` traces; the search uses the space's workloads_fn: same numbers, same options."""
    import hw_cost
    import spaces

    root = Path(__file__).resolve().parents[2]
    res = _abacus("cost", "--space", "fbnet", "--arch", "all-k5_e6", "--input-shape", "3,64,64", "--num-classes", "7",
                  "--space-option", "setting=imagenet", "--device", "zc706-hwnasbench", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    sp = spaces.get_space("fbnet").with_options({"setting": "imagenet"})
    fast = hw_cost.estimate(sp.workloads(sp.preset("all-k5_e6"), (1, 3, 64, 64), num_classes=7), None, device="zc706-hwnasbench")
    import pytest

    assert rep["latency_ms"] == pytest.approx(fast.latency_ms, rel=1e-12)
    assert rep["energy_mj"] == pytest.approx(fast.energy_mj, rel=1e-12)
    assert any(r["name"] == "header.conv" for r in rep["rows"])
    bad = _abacus("cost", "--space", "fbnet", "--space-option", "settng=imagenet", cwd=root)
    assert bad.returncode == 2 and "space_options.settng" in bad.stderr and "Traceback" not in bad.stderr
