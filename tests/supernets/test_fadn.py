"""FADN's CPU checks (shared/techniques/vision-generative-detection.md section 4) and its cost."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F

import hw_cost
import spaces
import supernets
from supernets.dynamic import UnmeasuredDynamicLayerError, assume_costs, has_data_dependent_cost
from supernets.fadn import (
    EDSRResBlock, FADNBlock, FADNRegularizer, branch_cost, dct2, dct_branch_labels, dilate_mask, frequency_components,
    idct2,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- 1. DCT mask sanity ------------------------------------------------------------------------

def test_dct_matches_scipy_and_reconstructs():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 13, 17, generator=g, dtype=torch.float64)
    ref = scipy.fft.dctn(y.numpy(), axes=(-2, -1), norm="ortho")
    assert np.abs(dct2(y).numpy() - ref).max() < 1e-12
    assert (idct2(dct2(y)) - y).abs().max() < 1e-12
    for mode in ("global", "block8"):
        comp = frequency_components(y, (0.15, 0.5), mode)
        assert comp.shape == (2, 3, 13, 17)
        assert (comp.sum(1) - y).abs().max() < 1e-6   # the union of the bands is the image


@pytest.mark.parametrize("mode", ["global", "block8"])
def test_constant_image_is_all_low_and_checkerboard_all_high(mode):
    const = torch.full((1, 3, 32, 32), 0.37)
    assert (dct_branch_labels(const, 3, mode) == 0).all()
    assert (dct_branch_labels(const, 2, mode) == 0).all()
    i, j = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    board = ((i + j) % 2).float().expand(1, 3, 32, 32)
    assert (dct_branch_labels(board, 3, mode) == 2).float().mean() > 0.99
    assert (dct_branch_labels(board, 2, mode) == 1).float().mean() > 0.99


def test_ramp_with_edge_is_high_only_near_the_edge():
    ramp = torch.linspace(0, 0.5, 64).expand(64, 64).clone()
    ramp[:, 30:] += 0.4                                    # one sharp vertical edge between columns 29 and 30
    labels = dct_branch_labels(ramp.expand(1, 3, 64, 64), 3, "block8")[0]
    cols = torch.nonzero(labels == 2)[:, 1]
    assert len(cols) > 0
    assert ((cols - 29.5).abs() <= 5).all(), sorted(set(cols.tolist()))


# -- 2. branch exclusivity and the straight-through gradient ------------------------------------

def test_hard_gumbel_mask_is_one_hot_and_gradients_reach_the_predictor():
    torch.manual_seed(0)
    block = FADNBlock(8, ("dwpw", "convpw", "resblock"))
    block.train()
    x = torch.randn(2, 8, 12, 12)
    y = block(x)
    m = block.last_mask
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert torch.equal(m.sum(1), torch.ones(2, 12, 12))
    y.square().mean().backward()          # the reconstruction path only: no sparsity or guide loss
    assert block.predictor.weight.grad is not None and block.predictor.weight.grad.abs().sum() > 0
    block.eval()
    with torch.no_grad():
        block(x)
    assert torch.equal(block.last_mask, F.one_hot(block.predict(x).argmax(1), 3).permute(0, 3, 1, 2).float())


def test_straight_through_gradient_is_nonzero_on_the_logits():
    torch.manual_seed(1)
    block = FADNBlock(4, ("identity", "resblock"), tau=1.0)
    block.train()
    x = torch.randn(1, 4, 6, 6)
    captured = {}

    def keep(module, args, out):
        out.retain_grad()
        captured["logits"] = out

    block.predictor.register_forward_hook(keep)
    block(x).sum().backward()
    assert captured["logits"].grad is not None and captured["logits"].grad.abs().sum() > 0


# -- 3. FLOP accounting -------------------------------------------------------------------------

def _conv_ops(workloads):
    return sum(d["ops"] for d in workloads if d["op"] in ("conv", "dwconv", "adder_conv"))


def test_all_high_equals_plain_edsr_resblock_with_copied_weights():
    torch.manual_seed(0)
    c = 16
    fadn = FADNBlock(c, ("dwpw", "convpw", "resblock"), res_scale=0.1).eval()
    plain = EDSRResBlock(c, res_scale=0.1).eval()
    plain.body.load_state_dict(fadn.branches[2].state_dict())
    fadn.forced = 2
    x = torch.randn(2, c, 10, 10)
    fadn.set_cost_recording(True)
    with torch.no_grad():
        assert torch.equal(fadn(x), plain(x))
    fadn.set_cost_recording(False)
    assert fadn.measured_cost_ratio() == pytest.approx(1.0, abs=1e-12)
    assert float(fadn.cost_ratio()) == pytest.approx(1.0)
    wl = fadn.hw_workload((1, c, 10, 10), (1, c, 10, 10))
    from hw_cost.trace import trace_workloads

    plain_wl, _ = trace_workloads(plain, (1, c, 10, 10))
    assert _conv_ops([d for d in wl if not d["name"].startswith("predictor")]) / _conv_ops(plain_wl) == pytest.approx(1.0)


def test_all_low_cost_ratio_at_64_channels():
    block = FADNBlock(64, ("dwpw", "convpw", "resblock")).eval()
    block.forced = 0
    with torch.no_grad():
        block(torch.randn(1, 64, 8, 8))
    assert float(block.cost_ratio()) == pytest.approx((9 * 64 + 64 * 64) / (18 * 64 * 64))
    assert round(float(block.cost_ratio()), 3) == 0.063
    assert branch_cost("convpw", 64) == pytest.approx(0.556, abs=1e-3)


@pytest.mark.parametrize("dilate", [False, True])
def test_random_mask_costs_the_weighted_sum_of_its_fractions(dilate):
    torch.manual_seed(3)
    c, h, w = 64, 16, 16
    block = FADNBlock(c, ("dwpw", "convpw", "resblock"), dilate_high=dilate).eval()
    labels = torch.randint(0, 3, (2, h, w))
    mask = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    p = mask.mean(dim=(0, 2, 3))
    block.set_cost_recording(True)
    with torch.no_grad():
        block(torch.randn(2, c, h, w), mask=mask)
    expected = 0.063 * p[0] + 0.556 * p[1] + 1.0 * p[2]
    assert float(block.cost_ratio(mask)) == pytest.approx(float(expected), abs=2e-3)
    exact = sum(branch_cost(k, c) * float(p[i]) for i, k in enumerate(("dwpw", "convpw", "resblock")))
    if not dilate:
        assert block.measured_cost_ratio() == pytest.approx(exact, rel=1e-9)
    else:  # the high branch's first conv also runs on the dilated ring
        assert block.measured_cost_ratio() > exact
    wl = block.hw_workload((2, c, h, w), (2, c, h, w))
    branch_ops = _conv_ops([d for d in wl if d["name"].startswith("branch")])
    assert branch_ops == pytest.approx(block.measured_cost_ratio() * 18 * c * c * 2 * h * w, rel=1e-9)
    pred = next(d for d in wl if d["name"] == "predictor")
    assert pred["ops"] == 2 * h * w * c * 3                     # the predictor's own cost is in the report
    assert {"gather", "scatter", "mask_index"} <= {d["name"].rpartition(".")[2] for d in wl}


# -- 4. the sparsity loss drives the cost ---------------------------------------------------------

def test_sparsity_loss_moves_the_cost_ratio_to_its_target():
    torch.manual_seed(0)
    blocks = [FADNBlock(8, ("dwpw", "convpw", "resblock")) for _ in range(2)]
    reg = FADNRegularizer(target_cost=0.3, lambda_sparse=10.0, lambda_guide=0.0)
    reg.blocks = blocks
    reg.train()
    for b in blocks:
        b.train()
    params = [p for b in blocks for p in b.predictor.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    x = torch.randn(4, 8, 12, 12)
    history = []
    for _ in range(200):
        h = x
        for b in blocks:
            h = b(h)
        loss = reg.auxiliary_loss()
        history.append(reg.last_terms["cost"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    start, end = np.mean(history[:5]), np.mean(history[-20:])
    assert start > 0.45
    assert abs(end - 0.3) < 0.05, (start, end)


# -- 5. dilation --------------------------------------------------------------------------------

def test_dilation_is_a_3x3_max_pool_and_contains_the_mask():
    g = torch.Generator().manual_seed(0)
    m = (torch.rand(2, 3, 9, 11, generator=g) > 0.8).float()
    d = dilate_mask(m)
    assert torch.equal(d, F.max_pool2d(m, 3, 1, 1))
    assert (d >= m).all()
    ref = np.zeros_like(m.numpy())
    mm = m.numpy()
    for i in range(9):
        for j in range(11):
            ref[:, :, i, j] = mm[:, :, max(0, i - 1): i + 2, max(0, j - 1): j + 2].max(axis=(2, 3))
    assert np.array_equal(d.numpy(), ref)


# -- the model, its space and its cost from data ------------------------------------------------

def test_edsr_fadn_builds_for_every_scale_and_rejects_a_mismatched_data_scale():
    space = spaces.get_space("edsr-fadn")
    for s in (2, 3, 4):
        arch = space.complete({"edsr.scale": s, "edsr.blocks": 1, "edsr.channels": 8, "fadn.enabled": True})
        model = supernets.build(space, arch, input_shape=(3, 8, 8), scale=s).eval()
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * s, 8 * s)
    with pytest.raises(ValueError, match="edsr.scale"):
        supernets.build(space, space.complete({"edsr.scale": 3}), input_shape=(3, 8, 8), scale=2)


@pytest.mark.parametrize("op,bits", [("conv", 32), ("adder", 32), ("conv", 8), ("adder", 8)])
def test_branch_ops_take_the_body_op_family(op, bits):
    space = spaces.get_space("edsr-fadn")
    arch = space.complete({"edsr.blocks": 1, "edsr.channels": 8, "edsr.op": op, "edsr.bits": bits, "fadn.enabled": True})
    model = supernets.build(space, arch, input_shape=(3, 8, 8), scale=2)
    model.train()
    model(torch.rand(2, 3, 8, 8)).mean().backward()
    assume_costs(model, "target")
    report = hw_cost.estimate(model, (1, 3, 8, 8))
    ops = {r.op for r in report.rows if ".branch" in r.name}
    assert ("adder_conv" in ops) == (op == "adder") and ("gather" in ops)
    assert not report.uncosted


def test_dynamic_model_is_never_costed_unmeasured_and_measured_cost_is_used():
    space = spaces.get_space("edsr-fadn")
    arch = space.complete({"edsr.blocks": 2, "edsr.channels": 16, "fadn.enabled": True, "fadn.target_cost": 0.3})
    model = supernets.build(space, arch, input_shape=(3, 16, 16), scale=2)
    assert has_data_dependent_cost(model)
    with pytest.raises(UnmeasuredDynamicLayerError):
        hw_cost.estimate(model, (1, 3, 16, 16))
    assume_costs(model, "target")
    assumed = hw_cost.estimate(model, (1, 3, 16, 16))
    blk = model.body[0]
    assert blk.fractions()[3] == "assumed"
    # force every pixel to the expensive branch and record: the measured cost replaces the assumption
    for b in model.body:
        b.forced = len(b.branches) - 1
        b.set_cost_recording(True)
    model.eval()
    with torch.no_grad():
        model(torch.rand(2, 3, 16, 16))
    measured = hw_cost.estimate(model, (1, 3, 16, 16))
    assert blk.fractions()[3] == "measured" and model.fadn.cost_summary()["cost_ratio"] == pytest.approx(1.0)
    assert measured.energy_mj > assumed.energy_mj
    plain = supernets.build(space, space.complete({"edsr.blocks": 2, "edsr.channels": 16}), input_shape=(3, 16, 16), scale=2)
    # all-high FADN = the plain network plus the predictor, the mask bookkeeping and the gather/scatter traffic
    assert measured.energy_mj > hw_cost.estimate(plain, (1, 3, 16, 16)).energy_mj > assumed.energy_mj
    # the measurement is a buffer: it survives a state_dict round trip
    fresh = supernets.build(space, arch, input_shape=(3, 16, 16), scale=2)
    fresh.load_state_dict(model.state_dict())
    assert fresh.body[0].measured and fresh.body[0].measured_cost_ratio() == pytest.approx(1.0)
