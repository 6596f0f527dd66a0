"""ManiDP: schedule, losses against hand computation, gates, dynamic cost from measured activity."""

from __future__ import annotations

import math

import pytest
import torch

from spaces import get_space
from supernets.build import build
from supernets.manidp import (
    DynamicBasicBlock, DynamicChannelGate, UnmeasuredDynamicLayerError, add_dynamic_gates, assume_active_ratios,
    complexity_weights, dynamic_convs, dynamic_gates, lasso_loss, manidp_kwargs, remain_rate, similarity_loss,
)

torch.set_num_threads(1)


def _resnet(width=0.25, blocks=1):
    arch = get_space("addernet-resnet").complete({f"stage{s}.width": width for s in (1, 2, 3)} | {f"stage{s}.blocks": blocks for s in (1, 2, 3)})
    return build("addernet-resnet", arch, input_shape=(1, 8, 8), num_classes=4)


# -- schedule -----------------------------------------------------------------------------------

def test_cosine_remain_rate_schedule():
    E, rT = 10, 0.6
    assert remain_rate(0, E, rT) == pytest.approx(1 - (1 - rT) * (1 - math.cos(math.pi / E)) / 2)
    assert remain_rate(E - 1, E, rT) == pytest.approx(rT, abs=1e-12)
    vals = [remain_rate(e, E, rT) for e in range(E)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert remain_rate(4, 10, 0.5, "linear") == pytest.approx(0.75)
    assert (remain_rate(4, 10, 0.5, "step"), remain_rate(5, 10, 0.5, "step")) == (1.0, 0.5)
    with pytest.raises(ValueError, match="remain schedule"):
        remain_rate(0, 10, 0.5, "exp")


# -- losses -------------------------------------------------------------------------------------

def test_complexity_weights_spec_values():
    losses = torch.tensor([0.0, 0.5, 0.99, 1.0, 1.5])
    w = complexity_weights(losses, mean_loss=2.0, thre_cls=0.5, gamma=1.0)  # kappa = 1
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.01, 0.0, 0.0]), atol=1e-6)
    w2 = complexity_weights(losses, 2.0, 0.5, gamma=2.0)
    assert torch.allclose(w2, torch.tensor([1.0, 0.25, 1e-4, 0.0, 0.0]), atol=1e-6)


def test_lasso_loss_on_known_gates():
    pi1 = torch.tensor([[1.0, 3.0], [0.0, 2.0]])          # per-sample channel means 2, 1
    pi2 = torch.tensor([[4.0, 0.0, 2.0], [1.0, 1.0, 1.0]])  # 2, 1
    w = torch.tensor([0.5, 1.0])
    # layer 1: mean(0.5*2, 1*1) = 1; layer 2: the same -> 2
    assert float(lasso_loss([pi1, pi2], w)) == pytest.approx(2.0)


def test_similarity_loss_hand_computed():
    r = 1 / math.sqrt(2)
    pi = torch.tensor([[1.0, 0.0], [0.0, 1.0]])   # rows already unit: P P^T = I
    f = torch.tensor([[1.0, 1.0], [3.0, 0.0]])    # F^ = [[r, r], [1, 0]] -> F F^T = [[1, r], [r, 1]]
    # || F F^T - P P^T ||_F^2 = 2 r^2 = 1, divided by B^2 = 4
    assert float(similarity_loss(pi, f)) == pytest.approx(2 * r * r / 4, abs=1e-6)
    # per-sample rescaling of F changes nothing; equal Gram matrices give 0
    assert float(similarity_loss(torch.tensor([[2.0, 2.0], [0.5, 0.0]]), f)) == pytest.approx(0.0, abs=1e-7)


def test_similarity_loss_invariants():
    torch.manual_seed(0)
    pi, f = torch.rand(6, 5), torch.rand(6, 5)
    assert float(similarity_loss(pi, pi)) == pytest.approx(0.0, abs=1e-7)
    scale = torch.rand(6, 1) + 0.1
    assert float(similarity_loss(pi * scale, f)) == pytest.approx(float(similarity_loss(pi, f)), rel=1e-5)
    assert float(similarity_loss(pi, f)) <= 4.0
    pi.requires_grad_(True)
    f.requires_grad_(True)
    similarity_loss(pi, f).backward()
    assert pi.grad.abs().sum() > 0 and f.grad.abs().sum() > 0     # no detach on either side


# -- gates --------------------------------------------------------------------------------------

def test_gate_init_squeeze_and_threshold():
    g = DynamicChannelGate(16, 64, squeeze_rate=2)
    assert g.squeeze == 1 and g.fc1.out_features == 64 and g.fc1.bias is None
    assert torch.equal(g.fc2.bias, torch.ones(64))
    assert DynamicChannelGate(16, 128, squeeze_rate=2).fc1.out_features == 64
    x = torch.randn(4, 16, 5, 5)
    g.train()
    pi = g.gate_values(x)
    assert (pi >= 0).all() and (pi <= 1000).all()
    g.threshold.fill_(float(pi.detach().median()))
    mask = g(x)
    assert torch.equal(mask, pi * (pi >= g.threshold))
    # gradient through pi on kept entries only (the indicator passes none)
    mask.sum().backward()
    assert g.fc2.bias.grad is not None and g.fc2.bias.grad.abs().sum() > 0


def test_threshold_update_keeps_ceil_rate_channels():
    torch.manual_seed(0)
    g = DynamicChannelGate(8, 10).train()
    for _ in range(3):
        g(torch.randn(5, 8, 3, 3))
    mu = g.mask_sum / float(g.mask_count)
    theta = g.update_threshold(0.65)
    assert int((mu >= theta).sum()) == math.ceil(0.65 * 10)
    g.reset_epoch_stats()
    with pytest.raises(ValueError, match="no training forward"):
        g.update_threshold(0.5)


# -- the gated network ----------------------------------------------------------------------------

def test_add_dynamic_gates_wraps_every_basic_block():
    m = add_dynamic_gates(_resnet(), 0.5)
    blocks = [b for b in m.modules() if isinstance(b, DynamicBasicBlock)]
    assert len(blocks) == 3 and len(dynamic_gates(m)) == 6 and len(dynamic_convs(m)) == 6
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="already"):
        add_dynamic_gates(m)
    with pytest.raises(ValueError, match="no basic blocks"):
        add_dynamic_gates(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_dense_equivalence_when_gates_are_ones():
    torch.manual_seed(0)
    dense = _resnet().eval()
    x = torch.randn(3, 1, 8, 8)
    ref = dense(x)
    gated = add_dynamic_gates(dense).eval()
    for g in dynamic_gates(gated):
        with torch.no_grad():
            g.fc2.weight.zero_()          # pi = ReLU(bias) = 1 for every instance and channel
    assert torch.allclose(gated(x), ref, atol=1e-6)


def _trained_like(seed=0):
    torch.manual_seed(seed)
    m = add_dynamic_gates(_resnet(), 0.5).train()
    for _ in range(2):
        m(torch.randn(16, 1, 8, 8))
    for g in dynamic_gates(m):
        g.update_threshold(0.5)
    return m.eval()


def test_instance_wise_keep_sets_and_threshold():
    m = _trained_like()
    masks = {}
    hooks = [g.register_forward_hook(lambda mod, a, out, i=i: masks.setdefault(i, []).append(out)) for i, g in enumerate(dynamic_gates(m))]
    m(torch.randn(8, 1, 8, 8))
    for h in hooks:
        h.remove()
    differs = False
    for i, g in enumerate(dynamic_gates(m)):
        mask = masks[i][0]
        kept = mask != 0
        assert (mask[kept] >= g.threshold).all()
        differs |= bool((kept != kept[0:1]).any())
    assert differs  # two inputs keep different channels somewhere


def test_measured_active_ratio_is_what_the_workload_reports():
    from hw_cost.trace import trace_workloads
    from evaluators.recipes import measure_active_ratios

    m = _trained_like()
    with pytest.raises(UnmeasuredDynamicLayerError):
        trace_workloads(m, (1, 1, 8, 8))          # never costed at full width silently
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(16, 1, 8, 8, generator=g), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    ratios = measure_active_ratios(m, data)
    assert set(ratios) == {n for n, _ in dynamic_convs(m)}
    assert any(r < 1.0 for r in ratios.values()) and all(0.0 <= r <= 1.0 for r in ratios.values())
    # conv2's ratio is the per-instance product, so it is never above conv1's
    for name, r in ratios.items():
        if name.endswith("conv2"):
            assert r <= ratios[name[:-1] + "1"] + 1e-12
    wl, unc = trace_workloads(m, (1, 1, 8, 8))
    assert unc == []
    by = {w["name"]: w for w in wl}
    for name, r in ratios.items():
        assert by[name]["active_ratio"] == pytest.approx(r) and by[name]["active_ratio_source"] == "measured"
        assert by[name]["op"] == "conv"
    assert any(w["name"].endswith("gate1.fc1") for w in wl)   # gate overhead is costed too


def test_hw_cost_scales_with_measured_ratio():
    import hw_cost
    from evaluators.recipes import measure_active_ratios

    m = _trained_like()
    data = [(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))]
    measure_active_ratios(m, data)
    cheap = hw_cost.estimate(m, (1, 1, 8, 8))
    for _, c in dynamic_convs(m):
        c.reset_activity()
        c.assumed_ratio = 1.0
    full = hw_cost.estimate(m, (1, 1, 8, 8))
    assert cheap.energy_mj < full.energy_mj


def test_infinite_threshold_gives_zero_conv_work():
    from evaluators.recipes import measure_active_ratios

    m = _trained_like()
    for g in dynamic_gates(m):
        g.threshold.fill_(float("inf"))
    ratios = measure_active_ratios(m, [(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))])
    assert all(r == 0.0 for r in ratios.values())


def test_assumed_ratios_are_flagged():
    from hw_cost.trace import trace_workloads

    m = add_dynamic_gates(_resnet(), 0.6)
    out = assume_active_ratios(m, "target")
    assert out["blocks.0.conv1"] == pytest.approx(0.6) and out["blocks.0.conv2"] == pytest.approx(0.36)
    wl, _ = trace_workloads(m, (1, 1, 8, 8))
    dyn = [w for w in wl if "active_ratio" in w]
    assert dyn and all(w["active_ratio_source"] == "assumed" for w in dyn)


def test_regulariser_needs_labels_and_returns_weighted_sum():
    torch.manual_seed(0)
    m = add_dynamic_gates(_resnet(), 0.5, lambda_lasso=0.2, lambda_graph=0.3, thre_cls=10.0)
    m.train()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    m(x)
    with pytest.raises(RuntimeError, match="labels"):
        m.manidp.auxiliary_loss()
    m.manidp.mean_train_loss.fill_(1.0)
    m.manidp.set_targets(y)
    logits = m(x)
    pis = [g.last_pi for g in dynamic_gates(m)]
    feats = [g.last_feature for g in dynamic_gates(m)]
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    w = complexity_weights(ce, 1.0, 10.0, 1.0)
    expected = 0.2 * lasso_loss(pis, w) + 0.3 * sum(similarity_loss(p, f) for p, f in zip(pis, feats))
    aux = m.manidp.auxiliary_loss()
    assert float(aux.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    aux.backward()
    assert all(g.fc1.weight.grad is not None for g in dynamic_gates(m))
    assert m.manidp.auxiliary_loss() is None       # consumed: nothing stale is reused


def test_l1_pressure_lowers_gate_values():
    def mean_pi_after(lam):
        torch.manual_seed(0)
        m = add_dynamic_gates(_resnet(), 0.5, lambda_lasso=lam, lambda_graph=0.0, thre_cls=10.0).train()
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
        gate_params = [p for gt in dynamic_gates(m) for p in gt.parameters()]
        opt = torch.optim.SGD(gate_params, lr=0.05)
        for _ in range(25):
            m.manidp.set_targets(y)
            loss = torch.nn.functional.cross_entropy(m(x), y) + m.manidp.auxiliary_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float(torch.stack([gt.gate_values(xx).mean() for gt, xx in _gate_inputs(m, x)]).mean())
    assert mean_pi_after(1.0) < 0.7 * mean_pi_after(0.0)


def _gate_inputs(m, x):
    """(gate, its input) pairs from one eval forward."""
    inputs = []
    hooks = [g.register_forward_pre_hook(lambda mod, a: inputs.append((mod, a[0]))) for g in dynamic_gates(m)]
    m.eval()
    m(x)
    for h in hooks:
        h.remove()
    return inputs


def test_manidp_kwargs_from_arch():
    arch = {"manidp.enabled": True, "manidp.target_remain_rate": 0.55, "manidp.lambda_lasso": 0.01, "manidp.squeeze_rate": 4,
            "manidp.remain_schedule": "linear", "stage1.op": "conv"}
    kw = manidp_kwargs(arch)
    assert kw == {"target_remain_rate": 0.55, "lambda_lasso": 0.01, "squeeze_rate": 4, "remain_schedule": "linear"}
    m = add_dynamic_gates(_resnet(), **kw)
    assert m.manidp.remain_schedule == "linear" and dynamic_gates(m)[0].squeeze == 2
