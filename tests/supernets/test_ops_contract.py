"""Contract over every registered op (timm's habit): a new op is tested with no new test code."""

from __future__ import annotations

import pytest
import torch

import hw_cost
from supernets.ops import get_op, list_ops

REQUIRED = {"op", "ops", "w_bits", "a_bits", "params", "in_elems", "out_elems"}


@pytest.mark.parametrize("name", list_ops())
def test_op_builds_runs_backpropagates_and_describes_its_cost(name):
    torch.manual_seed(0)
    op = get_op(name)(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 6, 6)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in op.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    report = hw_cost.estimate(op, (1, 4, 6, 6), device="zcu104")
    assert report.uncosted == [], f"op {name!r} is not costed: {report.uncosted}"
    assert report.energy_mj > 0 and report.latency_ms > 0
    if hasattr(op, "hw_workload"):
        wl = op.hw_workload((1, 4, 6, 6), (1, 8, 6, 6))
        for w in wl if isinstance(wl, list) else [wl]:
            assert REQUIRED <= set(w), f"{name}: workload lacks {REQUIRED - set(w)}"
            assert w["ops"] > 0


def test_adder_lp_schedule_moves_p_from_2_to_1():
    op = get_op("adder")(4, 4, 3, padding=1, p_schedule=(2.0, 1.0))
    assert op.p == 2.0
    op.set_progress(0.5)
    assert op.p == pytest.approx(1.5)
    op.set_progress(1.0)
    assert op.p == 1.0
    plain = get_op("adder")(4, 4, 3)
    plain.set_progress(0.5)
    assert plain.p == 1.0


def test_every_op_family_of_the_space_builds_and_trains_one_step():
    import spaces
    import supernets

    space = spaces.get_space("addernet-resnet")
    for op in ("conv", "adder", "winograd_adder", "binary"):
        for bits in ((32, 8) if op in ("conv", "adder") else (32,)):
            arch = space.complete({f"stage{s}.op": op for s in (1, 2, 3)} | {f"stage{s}.width": 0.25 for s in (1, 2, 3)}
                                  | {f"stage{s}.blocks": 1 for s in (1, 2, 3)}
                                  | ({f"stage{s}.bits": bits for s in (1, 2, 3)} if op in ("conv", "adder") else {}))
            model = supernets.build("addernet-resnet", arch, input_shape=(1, 8, 8), num_classes=10)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            x, t = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
            loss = torch.nn.functional.cross_entropy(model(x), t)
            loss.backward()
            opt.step()
            assert torch.isfinite(loss), (op, bits)
            report = hw_cost.estimate(model, (1, 1, 8, 8))
            assert report.uncosted == [], (op, bits, report.uncosted)
