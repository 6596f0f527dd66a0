"""Winograd AdderNet F(2x2, 3x3): transform sets, tiling/cropping, the adder in the Winograd domain,
its AdderNet gradients, the l2-to-l1 schedule and the hw_cost workload."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supernets.ops.registry import get_op
from supernets.ops.winograd_adder import (
    WINOGRAD_MATRICES,
    WinogradAdderConv2d,
    _WinogradAdderFn,
    winograd_adder_conv2d,
    winograd_conv2d,
    winograd_exactness_error,
    winograd_matrices,
)

SETS = ["standard", "balanced"]


def _np_mats(name):
    m = WINOGRAD_MATRICES[name]
    return np.array(m.AT), np.array(m.G), np.array(m.BT)


def _np_corr(d, g):
    ho, wo = d.shape[0] - 2, d.shape[1] - 2
    return np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(wo)] for i in range(ho)])


def _np_winograd_adder(x, w, padding, name, p=1.0):
    """Loop-per-tile numpy reference: Y_tile = A^T [-sum_c |G g G^T - B^T d B|^p] A, cropped."""
    AT, G, BT = _np_mats(name)
    n, c, h, wd = x.shape
    co = w.shape[0]
    ho, wo = h + 2 * padding - 2, wd + 2 * padding - 2
    th, tw = math.ceil(ho / 2), math.ceil(wo / 2)
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, padding : padding + h, padding : padding + wd] = x
    U = np.einsum("ia,ocab,jb->ocij", G, w, G)
    y = np.zeros((n, co, 2 * th, 2 * tw))
    for b in range(n):
        for ti in range(th):
            for tj in range(tw):
                d = xp[b, :, 2 * ti : 2 * ti + 4, 2 * tj : 2 * tj + 4]
                V = np.einsum("ia,cab,jb->cij", BT, d, BT)
                for o in range(co):
                    M = -np.sum(np.abs(U[o] - V) ** p, axis=0)
                    y[b, o, 2 * ti : 2 * ti + 2, 2 * tj : 2 * tj + 2] = AT @ M @ AT.T
    return y[:, :, :ho, :wo]


def _np_direct_adder(x, w, padding):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - 2, wd + 2 * padding - 2
    y = np.zeros((n, w.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, None, :, i : i + 3, j : j + 3]
            y[:, :, i, j] = -np.abs(patch - w[None]).sum(axis=(2, 3, 4))
    return y


# -- transform sets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_matrix_set_exact_in_multiplication_form(name):
    AT, G, BT = _np_mats(name)
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
        y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
        np.testing.assert_allclose(y, _np_corr(d, g), rtol=0, atol=1e-12)
    assert winograd_exactness_error(WINOGRAD_MATRICES[name]) < 1e-12


def test_balanced_set_has_equal_row_sums_and_standard_does_not():
    AT_s, _, _ = _np_mats("standard")
    AT_b, _, _ = _np_mats("balanced")
    assert AT_s.sum(1).tolist() == [3.0, -1.0]
    assert AT_b.sum(1).tolist() == [1.0, 1.0]
    assert winograd_matrices("balanced").source.lower().find("not the paper") >= 0


def test_user_supplied_matrices_checked():
    AT, G, BT = _np_mats("balanced")
    # compensate the balanced A^T in G instead of B^T: still exact, accepted
    s = np.diag([-1.0, 1.0, 1.0, -1.0])
    m = winograd_matrices((AT, s @ G, _np_mats("standard")[2]))
    assert m.name == "custom" and winograd_exactness_error(m) < 1e-12
    with pytest.raises(ValueError, match="not exact"):
        winograd_matrices((AT, G, _np_mats("standard")[2]))  # balanced A^T without compensation
    with pytest.raises(ValueError, match="shape"):
        winograd_matrices({"AT": np.zeros((4, 2)), "G": G, "BT": BT})
    with pytest.raises(ValueError, match="must be one of"):
        winograd_matrices("paper")


# -- tiling and cropping ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("hw,pad", [((7, 9), 1), ((8, 8), 1), ((5, 6), 0), ((3, 3), 0), ((1, 2), 1)])
def test_multiplication_form_tiling_equals_conv2d(name, hw, pad):
    torch.manual_seed(1)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(winograd_conv2d(x, w, padding=pad, matrices=name), F.conv2d(x, w, padding=pad), rtol=0, atol=1e-12)


@pytest.mark.parametrize("hw", [(7, 7), (9, 6), (5, 11), (2, 3)])
def test_odd_sizes_crop_to_conv_output_shape(hw):
    x = torch.randn(1, 2, *hw)
    op = WinogradAdderConv2d(2, 3, 3, padding=1)
    assert op(x).shape == torch.nn.Conv2d(2, 3, 3, padding=1)(x).shape


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
def test_forward_matches_per_tile_numpy_reference(name, p):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    y = winograd_adder_conv2d(torch.tensor(x), torch.tensor(w), padding=1, matrices=name, p=p)
    np.testing.assert_allclose(y.numpy(), _np_winograd_adder(x, w, 1, name, p), rtol=1e-10, atol=1e-9)


def test_p2_reduces_to_winograd_cnn_cross_term():
    # -(U-V)^2 = -U^2 + 2UV - V^2: the cross term is exactly 2x the convolution
    torch.manual_seed(4)
    x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(5, 3, 3, 3, dtype=torch.float64)
    AT, G, BT = WINOGRAD_MATRICES["standard"].tensors(torch.float64)
    y = winograd_adder_conv2d(x, w, padding=0, matrices="standard", p=2.0)
    U2 = torch.einsum("ia,ocab,jb->ocij", G, w, G).pow(2).sum(1)  # (co, 4, 4)
    d = x.unfold(2, 4, 2).unfold(3, 4, 2)
    V2 = torch.einsum("ia,nctuab,jb->nctuij", BT, d, BT).pow(2).sum(1)  # (n, th, tw, 4, 4)
    yu = torch.einsum("ai,oij,bj->oab", AT, U2, AT)  # same for every tile
    yv = torch.einsum("ai,ntuij,bj->ntuab", AT, V2, AT).permute(0, 1, 3, 2, 4).reshape(2, 1, 4, 4)
    expected = 2 * F.conv2d(x, w) - yu.repeat(1, 2, 2)[None] - yv
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", SETS)
def test_guard_not_equal_to_direct_adder(name):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 4, 6, 6)), rng.standard_normal((3, 4, 3, 3))
    wino = winograd_adder_conv2d(torch.tensor(x), torch.tensor(w), padding=1, matrices=name).numpy()
    direct = _np_direct_adder(x, w, 1)
    assert wino.shape == direct.shape
    # a different operator, not a rounding difference: the relative gap is O(1)
    assert np.abs(wino - direct).mean() > 0.2 * np.abs(direct).mean()


def _per_position_means(name):
    torch.manual_seed(6)
    x, w = torch.randn(8, 8, 12, 12), torch.randn(8, 8, 3, 3)
    y = winograd_adder_conv2d(x, w, padding=1, matrices=name, p=1.0)  # 12x12 -> 6x6 tiles
    return y.reshape(8, 8, 6, 2, 6, 2).mean(dim=(0, 1, 2, 4)).flatten()


def test_balanced_set_balances_per_position_output():
    std, bal = _per_position_means("standard"), _per_position_means("balanced")
    ratio = lambda m: float(m.abs().max() / m.abs().min())  # noqa: E731
    # standard: coefficient sums (9, -3, -3, 1) -> large means of opposite signs within a tile
    assert ratio(std) > 4.0 and (std > 0).any() and (std < 0).any()
    # balanced: every position has coefficient sum 1 -> nearly equal negative means
    assert ratio(bal) < 1.25 and (bal < 0).all()
    assert float(bal.std() / bal.abs().mean()) < 0.1 < float(std.std() / std.abs().mean())


# -- gradients ------------------------------------------------------------------------------------


def _uv(seed=7, e=16, co=3, ci=4, L=11):
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(e, co, ci, generator=gen, dtype=torch.float64)
    V = torch.randn(e, L, ci, generator=gen, dtype=torch.float64)
    g = torch.randn(e, co, L, generator=gen, dtype=torch.float64)
    return U, V, g


@pytest.mark.parametrize("p", [1.0, 1.5])
@pytest.mark.parametrize("chunk", [1, 50, 1 << 22])
def test_addernet_gradient_rules_in_winograd_domain(p, chunk):
    U, V, g = _uv()
    U.requires_grad_(True)
    V.requires_grad_(True)
    M = _WinogradAdderFn.apply(U, V, p, "addernet", chunk)
    gu, gv = torch.autograd.grad(M, (U, V), g)
    diff = U.detach()[:, :, None, :] - V.detach()[:, None, :, :]  # (e, co, L, ci) = U - V
    ref_u = (g[..., None] * -diff).sum(2)  # full precision: V - U
    ref_v = (g[..., None] * diff.clamp(-1, 1)).sum(1)  # HardTanh(U - V)
    torch.testing.assert_close(gu, ref_u, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gv, ref_v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(M, -diff.abs().pow(p).sum(-1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
def test_exact_gradient_rule_equals_autograd(p):
    U, V, g = _uv(8)
    U.requires_grad_(True)
    V.requires_grad_(True)
    gu, gv = torch.autograd.grad(_WinogradAdderFn.apply(U, V, p, "exact", 37), (U, V), g)
    ref = -(U[:, :, None, :] - V[:, None, :, :]).abs().pow(p).sum(-1)
    ru, rv = torch.autograd.grad(ref, (U, V), g)
    torch.testing.assert_close(gu, ru, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gv, rv, rtol=1e-10, atol=1e-10)


def test_module_gradients_chain_through_transforms():
    torch.manual_seed(9)
    op = WinogradAdderConv2d(3, 4, 3, padding=1, matrices="balanced").double()
    op.set_progress(1.0)  # p = 1
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    y = op(x)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, op.weight), gy)
    # rebuild U, V and the output map with plain autograd, inject the AdderNet rules at (U, V)
    AT, G, BT = op.matrices.tensors(torch.float64)
    # Ho=5 -> 3 tile rows, Wo=6 -> 3 tile cols: padded input 8x8 (pad 1 top/left, rest bottom/right)
    xp = F.pad(x, (1, 8 - 6 - 1, 1, 8 - 5 - 1))
    d = xp.unfold(2, 4, 2).unfold(3, 4, 2)
    V = torch.einsum("ia,nctuab,jb->ijntuc", BT, d, BT).reshape(16, -1, 3)
    U = torch.einsum("ia,ocab,jb->ijoc", G, op.weight, G).reshape(16, 4, 3)
    Ud, Vd = U.detach().requires_grad_(True), V.detach().requires_grad_(True)
    M = -(Ud[:, :, None, :] - Vd[:, None, :, :]).abs().sum(-1)
    Y = torch.einsum("ai,ijontu,bj->notuab", AT, M.reshape(4, 4, 4, 2, 3, 3), AT).permute(0, 1, 2, 4, 3, 5).reshape(2, 4, 6, 6)[:, :, :5, :6]
    torch.testing.assert_close(Y, y, rtol=1e-10, atol=1e-10)
    (gM,) = torch.autograd.grad(Y, M, gy)
    diff = Ud.detach()[:, :, None, :] - Vd.detach()[:, None, :, :]
    gU = (gM[..., None] * -diff).sum(2)
    gV = (gM[..., None] * diff.clamp(-1, 1)).sum(1)
    rx, rw = torch.autograd.grad((U, V), (x, op.weight), (gU, gV))
    torch.testing.assert_close(gx, rx, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)


def test_chunking_does_not_change_results():
    torch.manual_seed(10)
    x, w = torch.randn(2, 5, 9, 7, dtype=torch.float64), torch.randn(6, 5, 3, 3, dtype=torch.float64)
    for p in (1.0, 1.7):
        outs = []
        for chunk in (1, 100, 1 << 22):
            xx, ww = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
            y = winograd_adder_conv2d(xx, ww, padding=1, p=p, chunk_elems=chunk)
            y.pow(2).sum().backward()
            outs.append((y.detach(), xx.grad, ww.grad))
        for o in outs[1:]:
            for a, b in zip(o, outs[0]):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)


# -- schedule ---------------------------------------------------------------------------------------


def test_l2_to_l1_schedule_per_epoch():
    op = WinogradAdderConv2d(2, 2, 3)
    assert float(op.p) == 2.0  # a fresh module is at progress 0
    E = 10
    for e in range(E + 1):
        op.set_progress(e / E)
        assert float(op.p) == pytest.approx(2.0 - e / E, abs=1e-12)
    half = WinogradAdderConv2d(2, 2, 3, p_anneal_end=0.5)
    assert [half.p_at(t) for t in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([2.0, 1.5, 1.0, 1.0])
    fixed = WinogradAdderConv2d(2, 2, 3, p_start=1.0)
    fixed.set_progress(0.3)
    assert float(fixed.p) == 1.0
    with pytest.raises(ValueError, match="progress"):
        op.set_progress(1.5)


def test_schedule_state_travels_with_state_dict_and_changes_forward():
    a = WinogradAdderConv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 6, 6)
    y2 = a(x)
    a.set_progress(1.0)
    y1 = a(x)
    assert not torch.allclose(y1, y2)
    b = WinogradAdderConv2d(2, 3, 3, padding=1)
    b.load_state_dict(a.state_dict())
    assert float(b.p) == 1.0
    torch.testing.assert_close(b(x), y1)


# -- construction and workload ------------------------------------------------------------------


def test_registered_and_validates_arguments():
    assert get_op("winograd_adder") is WinogradAdderConv2d
    with pytest.raises(ValueError, match="kernel_size"):
        WinogradAdderConv2d(2, 2, 5)
    with pytest.raises(ValueError, match="stride"):
        WinogradAdderConv2d(2, 2, 3, stride=2)
    with pytest.raises(ValueError, match="grad_rule"):
        WinogradAdderConv2d(2, 2, 3, grad_rule="sign")
    with pytest.raises(ValueError, match="too small"):
        WinogradAdderConv2d(2, 2, 3)(torch.randn(1, 2, 2, 2))


@pytest.mark.parametrize("name", SETS)
def test_hw_workload_16_vs_36_per_tile(name):
    op = WinogradAdderConv2d(8, 16, 3, padding=1, matrices=name)
    x = torch.randn(2, 8, 10, 12)
    y = op(x)
    wl = op.hw_workload(tuple(x.shape), tuple(y.shape))
    tiles = 2 * 5 * 6
    assert wl["op"] == "winograd_adder" and wl["tiles"] == tiles
    assert wl["ops"] == 16 * tiles * 8 * 16
    assert wl["direct_adder_ops"] == 36 * tiles * 8 * 16
    assert wl["ops"] * 36 == wl["direct_adder_ops"] * 16
    assert wl["input_transform_ops"] == 32 * tiles * 8
    assert wl["output_transform_ops"] == 24 * tiles * 16
    assert wl["transform_ops"] == 32 * tiles * 8 + 24 * tiles * 16
    assert wl["transform_mults"] == 0
    assert wl["params"] == 16 * 8 * 16 and wl["out_elems"] == y.numel() and wl["in_elems"] == x.numel()
    # odd output: partial tiles still cost a whole tile
    wl_odd = op.hw_workload((1, 8, 7, 7), (1, 16, 7, 7))
    assert wl_odd["tiles"] == 16 and wl_odd["ops"] == 16 * 16 * 8 * 16


def test_half_precision_and_autocast_run_the_adder_in_fp32():
    torch.manual_seed(11)
    x, w = torch.randn(1, 4, 6, 6), torch.randn(3, 4, 3, 3)
    ref = winograd_adder_conv2d(x, w, padding=1)
    y16 = winograd_adder_conv2d(x.bfloat16(), w.bfloat16(), padding=1)
    assert y16.dtype == torch.bfloat16
    # inputs rounded to bf16, but sums in fp32: error is input rounding only, not accumulation
    torch.testing.assert_close(y16.float(), winograd_adder_conv2d(x.bfloat16().float(), w.bfloat16().float(), padding=1), rtol=1e-2, atol=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = winograd_adder_conv2d(x, w, padding=1)
    assert ya.dtype == torch.float32
    torch.testing.assert_close(ya, ref)


def test_alr_rescales_filter_gradient_and_p_is_settable():
    torch.manual_seed(12)
    op = WinogradAdderConv2d(3, 4, 3, padding=1, eta=0.2)
    assert op.alr == "accumulated" and op.supports_alr
    op(torch.randn(2, 3, 6, 6)).pow(2).sum().backward()
    g = op.weight.grad.clone()
    assert op.apply_alr()
    assert float(op.weight.grad.norm()) == pytest.approx(0.2 * math.sqrt(op.weight.numel()), rel=1e-5)
    torch.testing.assert_close(op.weight.grad / op.weight.grad.norm(), g / g.norm())  # direction kept
    off = WinogradAdderConv2d(3, 4, 3, alr="off")
    assert off.apply_alr() is False
    op.p = 1.25  # assignable, as adder.set_adder_p does
    assert op.p == 1.25 and op.state_dict()["_extra_state"]["p"] == 1.25
    with pytest.raises(ValueError, match="p must"):
        op.p = 0.5


def test_channel_slicing_uses_filter_prefix():
    torch.manual_seed(13)
    op = WinogradAdderConv2d(6, 8, 3, padding=1, bias=True)
    op.set_progress(1.0)
    x = torch.randn(2, 4, 5, 5)
    y = op(x, out_channels=5)
    ref = winograd_adder_conv2d(x, op.weight[:5, :4], op.bias[:5], padding=1, matrices=op.matrices, p=1.0)
    torch.testing.assert_close(y, ref)
    op.active_out_channels = 3
    assert op(x).shape[1] == 3
    with pytest.raises(ValueError, match="out_channels"):
        op(x, out_channels=9)


@pytest.mark.parametrize("p,rule", [(1.0, "addernet"), (1.5, "addernet"), (1.0, "exact"), (2.0, "exact")])
def test_grouped_adder_impl_matches_own_kernel(p, rule):
    torch.manual_seed(14)
    x, w = torch.randn(2, 5, 7, 6), torch.randn(4, 5, 3, 3)
    outs = []
    for impl in ("torch", "adder"):
        xx, ww = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        y = winograd_adder_conv2d(xx, ww, padding=1, p=p, grad_rule=rule, impl=impl)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        outs.append((y.detach(), xx.grad, ww.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_winograd_adder_handles_batch_of_many_tiles_in_a_network_block():
    """Regression: the kernel-delegated path returned a non-contiguous tensor when a map is one
    tile (2x2, the last stage of a digits ResNet) and the batch > 1, which ``.view`` rejected."""
    import torch

    from supernets.ops import WinogradAdderConv2d

    layer = WinogradAdderConv2d(12, 12, 3, padding=1)
    x = torch.randn(8, 12, 2, 2, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert y.shape == (8, 12, 2, 2) and x.grad is not None and torch.isfinite(x.grad).all()
