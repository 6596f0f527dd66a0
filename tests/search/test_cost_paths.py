"""One cost path: the search's ``CostModel``, ``abacus cost`` (a space or an exported model), the export's
``cost.json`` and tracing the ``load_exported`` network give the same numbers, for static and
dynamic architectures, with builder options and a non-default ``hardware.default_bits``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

import hw_cost  # noqa: E402
import spaces  # noqa: E402
import supernets  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from search.cli import app  # noqa: E402
from search.config import load_config  # noqa: E402
from search.cost_inputs import cost_reports  # noqa: E402
from search.engine import CostModel  # noqa: E402
from search.export import _cost_report  # noqa: E402

KEYS = ("energy_mj", "latency_ms", "lut", "ff", "dsp", "bram", "ops", "ddr_bytes", "feasible")
# (space, options, architecture, builder input (C, H, W), task besides the shape)
CASES = [
    ("addernet-resnet", {}, {"stage1.op": "adder", "stage2.op": "winograd_adder", "stage3.op": "binary"}, (1, 8, 8), {"num_classes": 10}),
    ("fbnet", {"setting": "imagenet"}, {"layer1.op": "k5_e6", "layer5.op": "k3_e1_g2"}, (3, 32, 32), {"num_classes": 7}),
    ("edsr-fadn", {}, {"edsr.op": "adder", "edsr.bits": 8, "edsr.blocks": 2, "edsr.channels": 8, "edsr.res_scale": 0.1},
     (3, 8, 8), {"scale": 2}),
    ("detector", {}, {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "head.bits": 8}, (1, 16, 16),
     {"num_classes": 3}),
    # dynamic: no workloads before training; every path traces the network at its target cost
    ("addernet-resnet", {}, {"manidp.enabled": True, "stage1.blocks": 1, "stage2.blocks": 1, "stage3.blocks": 1}, (1, 8, 8),
     {"num_classes": 10}),
]
HARDWARE = {"device": "zcu104", "style": "overlay", "default_bits": 8}


def _same(a, b, where):
    for k in KEYS:
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-12, nan_ok=True), (where, k)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_search_cost_command_and_exports_agree(case, tmp_path):
    name, options, partial, shape, task = case
    space = spaces.get_space(name).with_options(options)
    arch = space.complete(partial)
    dynamic = space.workloads(arch, (1, *shape), **task) is None

    # the search (pre-training screening)
    cfg = load_config(None, name="t", space=name, space_options=options, hardware=dict(HARDWARE))
    search_cost, _ = CostModel(cfg, space, shape, int(task.get("num_classes", 10)), {"input_shape": shape, **task})(arch)

    # the batch path for many at once gives the same numbers as one at a time
    many = cost_reports(space, [arch, space.default(), arch], shape, HARDWARE, task=task)
    _same(many[0].to_dict(), search_cost, "batch")
    assert many[0].to_dict() == many[2].to_dict()

    # the exported model: traced (load_exported), `abacus cost --model`, the export's cost.json
    model = supernets.build(space, arch, input_shape=shape, **task)
    supernets.save_exported(model, arch, space, {"input_shape": shape, **task}, tmp_path / "m")
    loaded = supernets.load_exported(tmp_path / "m", raw_inputs=False)
    if dynamic:
        from supernets.dynamic import assume_costs

        assume_costs(loaded, "target")
    traced = hw_cost.estimate(loaded, (1, *shape), **HARDWARE)
    _same(traced.to_dict(), search_cost, "load_exported traced")
    if not dynamic:  # (a dynamic export without measurements has no cost until it is evaluated)
        _same(_cost_report(tmp_path / "m", HARDWARE), search_cost, "export cost.json")
        res = CliRunner().invoke(app, ["cost", "--model", str(tmp_path / "m"), "--bits", "8", "--json"])
        assert res.exit_code == 0, res.output
        _same(json.loads(res.stdout), search_cost, "abacus cost --model")

    # `abacus cost --space` with the same options, shape and task
    args = ["cost", "--space", name, "--arch", json.dumps(arch), "--input-shape", ",".join(map(str, shape)), "--bits", "8", "--json"]
    if "num_classes" in task:
        args += ["--num-classes", str(task["num_classes"])]
    for k, v in options.items():
        args += ["--space-option", f"{k}={v}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])  # (a dynamic net's note comes first)
    _same(out, search_cost, "abacus cost --space")
    if not dynamic:
        assert out["rows"], "abacus cost shows the per-layer rows"
