"""FDA-BNN binary conv: the Fourier-series sign gradient, STE, noise adaptation and schedules."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supernets.ops.binary import BinaryConv2d, NoiseAdaptation, binarize, fda_sign_grad, fda_sign_series
from supernets.ops.registry import get_op


def _np_sine_series(t, n, omega):
    """sign(t) ~ (4/pi) sum_{i=0}^{n} sin((2i+1) omega t) / (2i+1), evaluated directly in numpy."""
    k = 2 * np.arange(n + 1) + 1
    return 4 / np.pi * np.sum(np.sin(np.multiply.outer(t, k) * omega) / k, axis=-1)


@pytest.mark.parametrize("n", [0, 1, 9, 13, 17])
@pytest.mark.parametrize("omega", [0.1, 0.3])
def test_fda_gradient_is_derivative_of_truncated_sine_series(n, omega):
    t = np.linspace(-1.0, 1.0, 81)
    h = 1e-5
    numeric = (_np_sine_series(t + h, n, omega) - _np_sine_series(t - h, n, omega)) / (2 * h)
    got = fda_sign_grad(torch.tensor(t), n, omega, clip=None).numpy()
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)
    # the closed form sin(2(n+1) w t) / (2 sin(w t)) times 4w/pi, away from t = 0
    nz = np.abs(t) > 1e-3
    closed = 4 * omega / np.pi * np.sin(2 * (n + 1) * omega * t[nz]) / (2 * np.sin(omega * t[nz]))
    np.testing.assert_allclose(got[nz], closed, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fda_sign_series(torch.tensor(t), n, omega).numpy(), _np_sine_series(t, n, omega), rtol=1e-12, atol=1e-12)


def test_fda_gradient_reference_values_and_clip_window():
    # spec section 4.1 table (omega = 0.1), including the negative Gibbs lobe at n = 17, t = 1
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(fda_sign_grad(t, 9).numpy(), [1.273, 1.221, 1.072, 0.847, 0.580], atol=1e-3)
    np.testing.assert_allclose(fda_sign_grad(t, 17).numpy(), [2.292, 1.995, 1.240, 0.363, -0.282], atol=1e-3)
    out = torch.tensor([-3.0, -1.01, 1.01, 2.0], dtype=torch.float64)
    assert torch.count_nonzero(fda_sign_grad(out, 9)) == 0
    assert torch.count_nonzero(fda_sign_grad(out, 9, clip=None)) == 4


@pytest.mark.parametrize("n", [9, 14])
def test_binarize_fda_backward_equals_formula(n):
    x = torch.linspace(-2, 2, 101, dtype=torch.float64).requires_grad_(True)
    up = torch.randn(101, dtype=torch.float64)
    y = binarize(x, "fda", n=n, omega=0.1)
    (gx,) = torch.autograd.grad(y, x, up)
    k = 2 * np.arange(n + 1) + 1
    tt = x.detach().numpy()
    ref = 4 * 0.1 / np.pi * np.cos(np.multiply.outer(tt, k) * 0.1).sum(-1) * (np.abs(tt) <= 1)
    np.testing.assert_allclose(gx.numpy(), up.numpy() * ref, rtol=1e-12, atol=1e-12)


def test_ste_gradient_mask():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.5]).requires_grad_(True)
    up = torch.arange(1.0, 8.0)
    (gx,) = torch.autograd.grad(binarize(x, "ste"), x, up)
    assert gx.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]
    (gx2,) = torch.autograd.grad(binarize(x, "ste", clip=None), x, up)
    assert gx2.tolist() == up.tolist()


def test_sign_forward_and_zero_handling():
    x = torch.tensor([-0.5, 0.0, 2.0])
    assert binarize(x).tolist() == [-1.0, 1.0, 1.0]
    assert binarize(x, zero_value=0.0).tolist() == [-1.0, 0.0, 1.0]  # torch.sign / BiBench behaviour
    with pytest.raises(ValueError, match="grad"):
        binarize(x, "approx")


def _reference_binary_conv(op, x):
    s = op.weight.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    bw = torch.where(op.weight >= 0, 1.0, -1.0).to(x.dtype) * s
    bx = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return F.conv2d(bx, bw, op.bias, op.stride, op.padding)


def test_forward_is_exact_binary_in_eval_and_after_noise_decay():
    torch.manual_seed(0)
    op = BinaryConv2d(6, 5, 3, padding=1, bias=True).double()
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    op.eval()
    ref = _reference_binary_conv(op, x)
    torch.testing.assert_close(op(x), ref, rtol=0, atol=1e-12)
    op.train()
    assert float(op.alpha) == pytest.approx(0.1)
    assert not torch.allclose(op(x), ref)  # noise adaptation active in training
    op.set_progress(1.0)  # alpha -> 0: exactly binary again
    assert float(op.alpha) == pytest.approx(0.0, abs=1e-15)
    torch.testing.assert_close(op(x), ref, rtol=0, atol=1e-12)
    bw = op.binary_weight()
    assert set(torch.unique(bw.sign()).tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(bw.abs().amax(dim=(1, 2, 3)), bw.abs().amin(dim=(1, 2, 3)))


@pytest.mark.parametrize("grad", ["fda", "ste"])
def test_module_gradients_use_surrogate_with_current_terms(grad):
    torch.manual_seed(1)
    op = BinaryConv2d(4, 3, 3, padding=1, grad=grad, noise=False).double()
    op.set_progress(0.5)  # n = 9 + floor(9 * 0.5) = 13
    assert int(op.fda_n) == 13
    x = (0.7 * torch.randn(2, 4, 5, 5, dtype=torch.float64)).requires_grad_(True)
    op.weight.data.mul_(3.0)
    y = op(x)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, op.weight), gy)
    # reference: conv grads at the binarised operands times the surrogate derivative
    s = op.weight.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    bx = torch.sign(x.detach()).requires_grad_(True)
    bws = (torch.sign(op.weight.detach()) * s).requires_grad_(True)
    gbx, gbws = torch.autograd.grad(F.conv2d(bx, bws, None, 1, 1), (bx, bws), gy)
    if grad == "fda":
        dx, dw = fda_sign_grad(x.detach(), 13), fda_sign_grad(op.weight.detach(), 13)
    else:
        dx, dw = (x.detach().abs() <= 1).double(), (op.weight.detach().abs() <= 1).double()
    torch.testing.assert_close(gx, gbx * dx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, gbws * s * dw, rtol=1e-10, atol=1e-12)


def test_schedules_match_reference_per_epoch():
    E = 400
    op = BinaryConv2d(4, 4, 3, noise_progress_offset=1 / E)  # BiBench: alpha uses (epoch + 1) / E
    ns, alphas = [], []
    for e in (0, 100, 200, 300, 399):
        op.set_progress(e / E)
        ns.append(int(op.fda_n))
        alphas.append(float(op.alpha))
    assert ns == [9, 11, 13, 15, 17]
    np.testing.assert_allclose(alphas, [0.1, 0.0851, 0.0496, 0.0144, 0.0], atol=1e-4)


def test_noise_weight_decays_monotonically_to_zero():
    op = BinaryConv2d(4, 4, 3, alpha0=0.2)
    vals = []
    for e in range(11):
        op.set_progress(e / 10)
        vals.append(float(op.alpha))
    assert vals[0] == pytest.approx(0.2) and vals[-1] == pytest.approx(0.0, abs=1e-15)
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert vals[5] == pytest.approx(0.1)  # cosine midpoint


def test_noise_module_registered_eagerly_and_trained():
    torch.manual_seed(2)
    op = BinaryConv2d(8, 4, 3, padding=1)
    names = {n for n, _ in op.named_parameters()}
    assert {"noise_w.fc1.weight", "noise_w.fc2.weight", "noise_a.fc1.weight", "noise_a.fc2.weight"} <= names
    opt = torch.optim.SGD(op.parameters(), lr=0.1)
    before = op.noise_a.fc2.weight.detach().clone()
    op(torch.randn(2, 8, 6, 6)).pow(2).mean().backward()
    assert op.noise_a.fc1.weight.grad is not None and op.noise_w.fc2.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, op.noise_a.fc2.weight)
    # STE variant: no noise module by default
    assert BinaryConv2d(8, 4, 3, grad="ste").noise_w is None


def test_noise_adaptation_formula():
    torch.manual_seed(3)
    m = NoiseAdaptation(128, hidden_ratio=64)
    assert m.fc1.out_features == 2
    x = torch.randn(5, 128)
    ref = F.relu(x @ m.fc1.weight.T) @ m.fc2.weight.T + 0.1 * torch.sin(x)
    torch.testing.assert_close(m(x), ref)
    assert NoiseAdaptation(8).fc1.out_features == 1  # never a zero-width layer


def test_registry_workload_and_validation():
    assert get_op("binary") is BinaryConv2d
    op = BinaryConv2d(8, 16, 3, stride=2, padding=1)
    x = torch.randn(2, 8, 9, 9)
    y = op(x)
    wl = op.hw_workload(tuple(x.shape), tuple(y.shape))
    assert wl["op"] == "binary_conv" and wl["w_bits"] == 1 and wl["a_bits"] == 1
    assert wl["ops"] == 2 * 5 * 5 * 16 * 8 * 9 and wl["params"] == 16 * 8 * 9
    assert wl["kernel"] == 9 and wl["out_pixels"] == 2 * 25
    assert BinaryConv2d(8, 16, 3, binarize_act=False).hw_workload(tuple(x.shape), (2, 16, 7, 7))["a_bits"] == 32
    with pytest.raises(ValueError, match="grad"):
        BinaryConv2d(4, 4, 3, grad="sign")
    with pytest.raises(ValueError, match="progress"):
        op.set_progress(-0.1)
    with pytest.raises(ValueError, match="n_start"):
        BinaryConv2d(4, 4, 3, n_start=10, n_end=5)


def test_schedule_state_survives_state_dict_round_trip():
    a = BinaryConv2d(4, 4, 3)
    a.set_progress(0.6)
    b = BinaryConv2d(4, 4, 3)
    b.load_state_dict(a.state_dict())
    assert int(b.fda_n) == 14 and float(b.alpha) == pytest.approx(a.alpha_at(0.6))
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    (ga,) = torch.autograd.grad(a.eval()(x).sum(), x)
    (gb,) = torch.autograd.grad(b.eval()(x).sum(), x)
    torch.testing.assert_close(ga, gb)  # b back-propagates with n = 14 too


def test_channel_slicing_with_noise_modules():
    torch.manual_seed(4)
    op = BinaryConv2d(8, 6, 3, padding=1)
    x = torch.randn(2, 5, 6, 6)
    y = op(x, out_channels=4)  # training mode: noise modules run on zero-padded full-width vectors
    assert y.shape == (2, 4, 6, 6)
    y.sum().backward()
    assert op.weight.grad[4:].abs().sum() == 0 and op.weight.grad[:4, :5].abs().sum() > 0
    op.eval()
    s = op.weight.detach()[:4, :5].abs().mean(dim=(1, 2, 3), keepdim=True)
    ref = F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(op.weight[:4, :5] >= 0, 1.0, -1.0) * s, None, 1, 1)
    torch.testing.assert_close(op(x, out_channels=4), ref)
