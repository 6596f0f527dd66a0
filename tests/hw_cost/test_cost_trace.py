"""Tracing an nn.Module: hw_workload modules, standard layers, functionals, MHA, uncosted modules."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hw_cost  # noqa: E402
from hw_cost.trace import trace_workloads  # noqa: E402


class AdderLike(nn.Module):
    """A custom op that describes itself; its child conv must not be counted again."""

    def __init__(self, c):
        super().__init__()
        self.inner = nn.Conv2d(c, c, 3, padding=1)
        self.calls = []

    def forward(self, x):
        return self.inner(x)

    def hw_workload(self, input_shape, output_shape):
        self.calls.append((input_shape, output_shape))
        torch.ones(2).sum()  # torch work done while costing must not become a row
        n, c, h, w = output_shape
        return dict(op="adder_conv", ops=n * h * w * c * c * 9, w_bits=8, a_bits=8, params=c * c * 9,
                    in_elems=n * c * h * w, out_elems=n * c * h * w, in_channels=c, out_channels=c, kernel=9, out_pixels=n * h * w)


class Mystery(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale + 1


class Opaque(nn.Module):
    """A leaf whose forward makes no call hw_cost can cost: it must be reported, never zero."""

    def forward(self, x):
        return torch.fft.fft2(x).real


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x))) + x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8)
        self.adder = AdderLike(8)
        self.mystery = Mystery()
        self.opaque = Opaque()
        self.up = nn.Upsample(scale_factor=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.tconv = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.adder(self.block(x))
        x = self.dw(self.up(self.opaque(self.mystery(x))))
        x = self.tconv(x)
        t = x.flatten(2).transpose(1, 2)
        t, _ = self.attn(t, t, t)
        return self.fc(self.drop(t.mean(1)))


@pytest.fixture(scope="module")
def traced():
    net = Net()
    wls, unc = trace_workloads(net, (2, 3, 8, 8))
    return net, {d["name"]: d for d in wls}, unc


def test_custom_module_costed_by_hw_workload_children_not_double_counted(traced):
    net, w, _ = traced
    assert w["adder"]["op"] == "adder_conv" and net.adder.calls == [((2, 8, 8, 8), (2, 8, 8, 8))]
    assert "adder.inner" not in w
    assert not any(n.startswith("sum") for n in w)


def test_unknown_module_costed_by_its_calls_or_reported(traced):
    _, w, unc = traced
    # a leaf hw_cost does not know is costed by the torch calls it makes, as the same calls in a container
    assert w["mystery.mul"]["op"] == "eltwise" and w["mystery.add"]["op"] == "eltwise"
    assert unc == ["opaque"] and "opaque" not in w
    assert "drop" not in unc and "drop" not in w  # Dropout: zero cost, not uncosted


def test_standard_layers_and_functionals(traced):
    _, w, _ = traced
    assert w["stem"]["op"] == "conv" and w["stem"]["ops"] == 2 * 64 * 8 * 3 * 9
    assert w["relu"]["op"] == "eltwise" and w["relu"].get("fused")          # F.relu right after the stem
    assert w["block.bn"]["op"] == "norm" and w["block.bn"].get("fused")
    # the residual add consumes the ReLU's output (the op just before it): fused into that output stage
    assert w["block.add"]["op"] == "eltwise" and w["block.add"].get("fused")
    assert w["dw"]["op"] == "dwconv" and w["dw"]["ops"] == 2 * 256 * 8 * 9
    assert w["up"]["op"] == "upsample"
    # transposed conv: effective MACs = input pixels x Cin x Cout x taps (no inserted zeros)
    assert w["tconv"]["op"] == "transposed_conv" and w["tconv"]["ops"] == 2 * 256 * 8 * 4 * 4
    assert w["attn.qk"]["op"] == "matmul" and w["attn.softmax"]["op"] == "softmax"
    assert w["attn.qk"]["ops"] == 2 * 2 * 1024 * 1024 * 2
    assert w["fc"]["op"] == "linear" and w["fc"]["ops"] == 2 * 4 * 10
    assert w["mean"]["op"] == "pool"


def test_estimate_on_module_and_mode_restored():
    net = Net().train()
    r = hw_cost.estimate(net, (1, 3, 8, 8), default_bits=8)
    assert net.training
    assert r.uncosted == ["opaque"] and r.energy_mj > 0 and r.feasible
    assert {row.op for row in r.rows} >= {"conv", "adder_conv", "dwconv", "matmul", "softmax", "linear"}
    assert all(row.w_bits == 8 for row in r.rows if row.op == "conv")


def test_import_hw_cost_does_not_import_torch():
    code = "import sys, hw_cost, hw_cost.render, hw_cost.constraints; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(__import__("pathlib").Path(hw_cost.__file__).parents[1]))
    assert out.returncode == 0, out.stderr


class ModuleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        y = self.pool(self.act(self.dw(y)))
        return self.fc(torch.flatten(y, 1))


class FunctionalNet(ModuleNet):
    """The same network written with functional calls (and Python's sum for nothing)."""

    def forward(self, x):
        bn = self.bn
        y = F.relu(F.batch_norm(F.conv2d(x, self.conv.weight, None, 1, 1), bn.running_mean, bn.running_var, bn.weight, bn.bias))
        y = F.avg_pool2d(F.relu(F.conv2d(y, self.dw.weight, None, 2, 1, 1, 8)), 2)
        y = sum([y])                    # 0 + y: no arithmetic
        return F.linear(torch.flatten(y, 1), self.fc.weight, self.fc.bias)


def test_functional_and_module_forms_cost_the_same():
    keys = ("energy_mj", "latency_ms", "lut", "dsp", "bram", "ops", "ddr_bytes")
    a, b = ModuleNet(), FunctionalNet()
    b.load_state_dict(a.state_dict())
    ra, rb = hw_cost.estimate(a, (1, 4, 8, 8)), hw_cost.estimate(b, (1, 4, 8, 8))
    assert [r.op for r in ra.rows] == [r.op for r in rb.rows] == ["conv", "norm", "eltwise", "dwconv", "eltwise", "pool", "linear"]
    for k in keys:
        assert getattr(ra, k) == pytest.approx(getattr(rb, k), rel=1e-12), k


class ZeroInLeaf(nn.Module):
    def forward(self, x):
        return x + x.mul(0)


class ZeroInContainer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.leaf = ZeroInLeaf()

    def forward(self, x):
        return self.leaf(self.conv(x)) + self.conv(x).mul(0)


def test_zero_ops_are_free_wherever_written():
    wls, unc = trace_workloads(ZeroInContainer(), (1, 3, 4, 4))
    names = [d["name"] for d in wls]
    assert not unc and not any("mul" in n for n in names)     # x * 0 is a constant: no row, in a leaf or not
    assert "leaf.add" in names                                # the add in the leaf is costed like one in a container


def test_pool_costs_a_window_reduction_not_a_conv():
    from hwc_workloads import conv

    c = conv("conv", 16, 16, 32, bits=8)
    pool = dict(name="pool", op="pool", ops=16 * 32 * 32 * 9, kernel=9, in_elems=16 * 32 * 32, out_elems=16 * 32 * 32,
                w_bits=8, a_bits=8)
    rc = hw_cost.estimate([c], None, pe_array=(16, 16))
    rp = hw_cost.estimate([pool], None, pe_array=(16, 16))
    # one output per lane per cycle through a 16-input adder tree (9 <= 16): a ninth of the conv's cycles
    assert rp.rows[0].cycles - 1000 == pytest.approx((rc.rows[0].cycles - 1000) / 9)


def test_trace_restores_threads_and_is_public():
    n = torch.get_num_threads()
    hw_cost.trace_workloads(ModuleNet(), (1, 4, 8, 8))
    assert torch.get_num_threads() == n and hw_cost.trace_workloads.__module__ == "hw_cost.trace"
