"""Quantised conv and shared-scale quantised adder: integer path == fake-quant float path, STE grads,
calibration and workloads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from supernets.ops.quant import QuantAdderConv2d, QuantConv2d, int_adder_conv2d, int_conv2d
from supernets.ops.registry import get_op

BITS = [4, 8, 16]


def _dtype_for(bits):
    # 16-bit products need > 24 mantissa bits to accumulate exactly (module docstring)
    return torch.float64 if bits == 16 else torch.float32


def _calibrated(op, x):
    op.train()
    op(x)
    op.eval()
    return op


# -- QuantConv2d ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("scale_mode", ["float", "pow2"])
def test_quant_conv_integer_path_equals_fake_quant_path(bits, granularity, scale_mode):
    torch.manual_seed(bits)
    dt = _dtype_for(bits)
    op = QuantConv2d(6, 8, 3, padding=1, bias=True, bits=bits, granularity=granularity, scale_mode=scale_mode).to(dt)
    x = torch.randn(2, 6, 7, 7, dtype=dt)
    _calibrated(op, x)
    x2 = 1.3 * torch.randn(2, 6, 7, 7, dtype=dt)  # includes values beyond the calibrated range (clipped)
    assert torch.equal(op(x2), op.integer_forward(x2))


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(groups=2, dilation=2, padding=2), dict(groups=4, padding=1)])
def test_quant_conv_integer_path_geometry(kw):
    torch.manual_seed(0)
    op = QuantConv2d(4, 4, 3, bits=8, granularity="per_channel", **kw)
    x = torch.randn(3, 4, 9, 8)
    _calibrated(op, x)
    y = op(x)
    assert y.shape == F.conv2d(x, op.weight, None, **kw).shape
    assert torch.equal(y, op.integer_forward(x))


def test_int_conv2d_matches_float_conv_on_integers():
    gen = torch.Generator().manual_seed(1)
    qx = torch.randint(-127, 128, (2, 6, 9, 7), generator=gen)
    qw = torch.randint(-127, 128, (4, 3, 3, 2), generator=gen)
    got = int_conv2d(qx, qw, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    ref = F.conv2d(qx.double(), qw.double(), None, (2, 1), (1, 2), (1, 2), 2)
    assert got.dtype == torch.int64 and torch.equal(got, ref.long())
    with pytest.raises(TypeError, match="integer"):
        int_conv2d(qx.float(), qw)


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_quant_conv_fake_quant_values(granularity):
    torch.manual_seed(2)
    op = QuantConv2d(3, 5, 3, bits=4, granularity=granularity)
    s = op.weight_scale()
    amax = op.weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True) if granularity == "per_channel" else op.weight.detach().abs().max()
    torch.testing.assert_close(s, amax / 7)
    levels = torch.round(op.weight.detach() / s)
    assert levels.abs().max() <= 7
    assert ((levels * s - op.weight.detach()).abs() <= s / 2 + 1e-7).all()
    p2 = QuantConv2d(3, 5, 3, bits=4, granularity=granularity, scale_mode="pow2")
    s2 = p2.weight_scale()
    assert torch.equal(torch.log2(s2), torch.round(torch.log2(s2)))


def test_quant_conv_straight_through_gradients():
    torch.manual_seed(3)
    op = QuantConv2d(4, 6, 3, padding=1, bits=4, granularity="per_channel").double()
    _calibrated(op, 0.5 * torch.randn(2, 4, 6, 6, dtype=torch.float64))  # small range: larger inputs clip
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    y = op(x)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, op.weight), gy)
    s_x, s_w = op.act_scale(x, update=False), op.weight_scale()
    x_hat = (torch.clamp(torch.round(x.detach() / s_x), -7, 7) * s_x).requires_grad_(True)
    w_hat = (torch.clamp(torch.round(op.weight.detach() / s_w), -7, 7) * s_w).requires_grad_(True)
    y_ref = F.conv2d(x_hat, w_hat, None, 1, 1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    rx, rw = torch.autograd.grad(y_ref, (x_hat, w_hat), gy)
    mask_x = (x.detach() / s_x).abs() <= 7.5
    assert (~mask_x).any() and mask_x.any()  # both regions exercised
    torch.testing.assert_close(gx, rx * mask_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-12)  # weights never clip (max-abs scale)


def test_quant_conv_float_passthrough_and_mixed_bits():
    torch.manual_seed(4)
    op = QuantConv2d(3, 4, 3, padding=1, bias=True, bits=32)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(op(x), F.conv2d(x, op.weight, op.bias, padding=1))
    w_only = QuantConv2d(3, 4, 3, bits=8, act_bits=32).eval()
    s = w_only.weight_scale()
    torch.testing.assert_close(w_only(x), F.conv2d(x, torch.round(w_only.weight / s) * s))
    with pytest.raises(ValueError, match="integer_forward"):
        w_only.integer_forward(x)


def test_activation_calibration_ema_and_dynamic():
    op = QuantConv2d(2, 2, 1, bits=8, act_momentum=0.5)
    op.train()
    op(torch.full((1, 2, 2, 2), 4.0))
    assert float(op.calib.act_absmax) == 4.0  # first batch initialises
    op(torch.full((1, 2, 2, 2), 2.0))
    assert float(op.calib.act_absmax) == 3.0  # EMA
    op.eval()
    big = torch.full((1, 2, 2, 2), 10.0)
    assert float(op.act_scale(big)) == pytest.approx(3.0 / 127)  # eval: frozen statistic
    assert float(op.calib.act_absmax) == 3.0
    dyn = QuantConv2d(2, 2, 1, bits=8, act_calibration="dynamic").eval()
    assert float(dyn.act_scale(big)) == pytest.approx(10.0 / 127)


def test_quant_conv_workload_and_validation():
    assert get_op("quant_conv") is QuantConv2d
    op = QuantConv2d(8, 16, 3, stride=2, padding=1, bits=4)
    x = torch.randn(2, 8, 8, 8)
    wl = op.hw_workload(tuple(x.shape), tuple(op(x).shape))
    assert (wl["op"], wl["w_bits"], wl["a_bits"]) == ("conv", 4, 4)
    assert wl["ops"] == 2 * 4 * 4 * 16 * 8 * 9 and wl["params"] == 16 * 8 * 9
    assert wl["weight_bytes"] == 16 * 8 * 9 // 2
    dw = QuantConv2d(8, 8, 3, groups=8, bits=8)
    assert dw.hw_workload((1, 8, 5, 5), (1, 8, 3, 3))["op"] == "dwconv"
    with pytest.raises(ValueError, match="bits"):
        QuantConv2d(2, 2, 3, bits=12)
    with pytest.raises(ValueError, match="granularity"):
        QuantConv2d(2, 2, 3, granularity="per_group")
    op.set_progress(0.5)  # uniform API, no schedule
    with pytest.raises(ValueError, match="progress"):
        op.set_progress(2.0)


# -- QuantAdderConv2d --------------------------------------------------------------------------------


@pytest.fixture
def adder():
    import supernets.ops.adder as adder_module

    return adder_module


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("kw", [dict(padding=1, bias=True), dict(stride=2)])
def test_quant_adder_integer_path_equals_fake_quant_path(adder, bits, kw):
    torch.manual_seed(bits)
    op = QuantAdderConv2d(3, 4, 3, bits=bits, **kw)
    x = 2.0 * torch.randn(2, 3, 7, 6)
    _calibrated(op, x)
    y = op(x)
    yi = op.integer_forward(x)
    assert torch.equal(y, yi)
    assert (y if "bias" not in kw else y - op.bias.view(1, -1, 1, 1)).max() <= 0


def test_int_adder_matches_direct_loop():
    gen = torch.Generator().manual_seed(5)
    qx = torch.randint(-100, 100, (2, 4, 6, 5), generator=gen)
    qw = torch.randint(-100, 100, (6, 2, 3, 3), generator=gen)
    got = int_adder_conv2d(qx, qw, stride=1, padding=1, groups=2, chunk_elems=50)
    xp = F.pad(qx, (1, 1, 1, 1))
    ref = torch.zeros_like(got)
    for o in range(6):
        g = o // 3
        for i in range(6):
            for j in range(5):
                ref[:, o, i, j] = -(xp[:, 2 * g : 2 * g + 2, i : i + 3, j : j + 3] - qw[o]).abs().sum(dim=(1, 2, 3))
    assert torch.equal(got, ref)


def test_shared_scale_is_one_scale_for_weights_and_activations(adder):
    torch.manual_seed(6)
    op = QuantAdderConv2d(3, 4, 3, bits=8, act_calibration="dynamic").eval()
    x = 5.0 * torch.randn(1, 3, 5, 5)  # activations wider than N(0,1) weights
    s = op.shared_scale(x)
    raw = max(float(x.abs().max()), float(op.weight.detach().abs().max())) / 127
    assert float(s) == 2.0 ** torch.ceil(torch.log2(torch.tensor(raw))).item()
    w_only = QuantAdderConv2d(3, 4, 3, bits=8, scale_source="weight", scale_mode="float")
    assert float(w_only.shared_scale(x)) == pytest.approx(float(w_only.weight.detach().abs().max()) / 127)
    pct = QuantAdderConv2d(3, 4, 3, bits=8, scale_source="percentile", percentile=50.0, scale_mode="float", act_calibration="dynamic")
    assert float(pct.shared_scale(x)) < raw


def test_quant_adder_error_shrinks_with_bits(adder):
    torch.manual_seed(7)
    x = torch.randn(2, 4, 6, 6)
    errs = []
    ref_op = QuantAdderConv2d(4, 4, 3, padding=1, bits=32)
    with torch.no_grad():
        ref = ref_op(x)
    for bits in (4, 8, 16):
        op = QuantAdderConv2d(4, 4, 3, padding=1, bits=bits, act_calibration="dynamic")
        op.load_state_dict(ref_op.state_dict())
        with torch.no_grad():
            errs.append(float((op(x) - ref).abs().max() / ref.abs().max()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3


def test_quant_adder_gradients_are_adder_gradients_at_dequantised_values(adder):
    torch.manual_seed(8)
    op = QuantAdderConv2d(3, 4, 3, padding=1, bits=8, act_calibration="dynamic").double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    y = op(x)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, op.weight), gy)
    s = op.shared_scale(x.detach())
    x_hat = (torch.round(x.detach() / s).clamp(-127, 127) * s).requires_grad_(True)
    w_hat = (torch.round(op.weight.detach() / s).clamp(-127, 127) * s).requires_grad_(True)
    rx, rw = torch.autograd.grad(adder.adder_conv2d(x_hat, w_hat, None, 1, 1), (x_hat, w_hat), gy)
    torch.testing.assert_close(gx, rx, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)


def test_quant_adder_workload_and_validation():
    assert get_op("quant_adder") is QuantAdderConv2d
    for bits in (4, 8, 16, 32):
        wl = QuantAdderConv2d(8, 16, 3, padding=1, bits=bits).hw_workload((2, 8, 6, 6), (2, 16, 6, 6))
        assert (wl["op"], wl["w_bits"], wl["a_bits"]) == ("adder_conv", bits, bits)
        assert wl["ops"] == 2 * 36 * 16 * 8 * 9 and wl["shared_scale"] is True
    with pytest.raises(ValueError, match="scale_source"):
        QuantAdderConv2d(2, 2, 3, scale_source="mean")
    with pytest.raises(ValueError, match="bits"):
        QuantAdderConv2d(2, 2, 3, bits=1)
    with pytest.raises(ValueError, match="bits=32"):
        QuantAdderConv2d(2, 2, 3, bits=32).integer_forward(torch.randn(1, 2, 4, 4))


def test_quant_ops_slicing_and_integer_path(adder):
    torch.manual_seed(9)
    qc = QuantConv2d(6, 8, 3, padding=1, bits=8, granularity="per_channel", act_calibration="dynamic").eval()
    qa = QuantAdderConv2d(6, 8, 3, padding=1, bits=8, act_calibration="dynamic").eval()
    x = torch.randn(2, 4, 5, 5)
    for op in (qc, qa):
        y = op(x, out_channels=5)
        assert y.shape == (2, 5, 5, 5)
        assert torch.equal(y, op.integer_forward(x, out_channels=5))
    s_w = qc.weight_scale(qc.weight[:5, :4])
    ref = F.conv2d(x, torch.round(qc.weight[:5, :4] / s_w) * s_w, None, 1, 1)
    s_x = qc.act_scale(x)
    ref_q = F.conv2d(torch.round(x / s_x) * s_x, torch.round(qc.weight[:5, :4] / s_w) * s_w, None, 1, 1)
    torch.testing.assert_close(qc(x, out_channels=5), ref_q)
    assert not torch.allclose(ref, ref_q, rtol=0, atol=0)


def test_quant_adder_alr_and_progress_api(adder):
    torch.manual_seed(10)
    op = QuantAdderConv2d(3, 4, 3, padding=1, bits=8)
    assert op.supports_alr and op.alr == "accumulated"
    op(torch.randn(2, 3, 5, 5)).sum().backward()
    assert op.apply_alr()
    assert float(op.weight.grad.norm()) == pytest.approx(0.2 * (op.weight.numel() ** 0.5), rel=1e-5)
    op.set_progress(0.3)
    assert adder.set_adder_p(torch.nn.Sequential(op), 1.5) == 1 and op.p == 1.5


def test_workloads_follow_active_channels():
    from supernets.ops.binary import BinaryConv2d

    for op in (QuantConv2d(8, 16, 3, padding=1, bits=8), QuantAdderConv2d(8, 16, 3, padding=1, bits=8), BinaryConv2d(8, 16, 3, padding=1)):
        wl = op.hw_workload((1, 4, 6, 6), (1, 10, 6, 6))  # a sliced supernet layer: 4 in, 10 out
        assert (wl["in_channels"], wl["out_channels"]) == (4, 10)
        assert wl["ops"] == 36 * 10 * 4 * 9 and wl["params"] == 10 * 4 * 9
