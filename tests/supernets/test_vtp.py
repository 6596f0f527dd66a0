"""VTP: the slim model equals the gated model with the pruned gates zeroed; thresholds; accounting."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import spaces.tnt  # noqa: F401
from spaces import get_space
from supernets.build import build
from supernets.tnt import Attention, Mlp
from supernets.vtp import (
    ChannelGate, VTPConfig, add_l1_subgradient, apply_prune_plan, gate_l1, gated_layers, gates, prune_plan, zero_pruned_gates,
)

torch.set_num_threads(1)


def _gated_tnt(seed=0, **over):
    torch.manual_seed(seed)
    arch = get_space("tnt").complete({"tnt.depth": 2, "tnt.embed_dim": 32, "tnt.outer_heads": 4, "tnt.inner_dim": 8,
                                      "tnt.mlp_ratio": 2, "vtp.enabled": True, "vtp.gate_inner": True, **over})
    m = build("tnt", arch, input_shape=(3, 16, 16), num_classes=5)
    with torch.no_grad():
        for g in gates(m):  # trained-looking scores: spread out, some near zero
            g.score.copy_(torch.rand(g.dim) * 2.0)
    return m.eval()


@pytest.mark.parametrize("rounding", ["multiple", "uniform", "none"])
@pytest.mark.parametrize("scope", ["global", "per_layer", "per_block"])
def test_slim_model_equals_gated_model_with_zeroed_gates(rounding, scope):
    m = _gated_tnt()
    plan = prune_plan(m, 0.4, scope, rounding, block_keep={0: 0.5, 1: 0.8})
    gated = zero_pruned_gates(copy.deepcopy(m), plan)
    slim = apply_prune_plan(copy.deepcopy(gated), plan)
    assert not gates(slim)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(gated(x), slim(x), atol=1e-5, rtol=0)
        # and pruning really changed the function (the zeroed gates mattered)
        assert not torch.allclose(m(x), slim(x), atol=1e-4)
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in m.parameters())


def test_all_ones_gates_are_the_identity():
    m = _gated_tnt()
    with torch.no_grad():
        for g in gates(m):
            g.score.fill_(1.0)
    plain = build("tnt", get_space("tnt").complete({"tnt.depth": 2, "tnt.embed_dim": 32, "tnt.outer_heads": 4, "tnt.inner_dim": 8,
                                                    "tnt.mlp_ratio": 2}), input_shape=(3, 16, 16), num_classes=5).eval()
    missing, unexpected = plain.load_state_dict(m.state_dict(), strict=False)
    assert not missing and all(k.endswith("gate.score") for k in unexpected)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(plain(x), m(x), atol=1e-6)


def test_slim_parameter_counts_follow_the_formula():
    m = _gated_tnt(**{"vtp.gate_inner": False})
    plan = prune_plan(m, 0.5, "global", "multiple")
    slim = apply_prune_plan(copy.deepcopy(m), plan)
    d = 32
    for name, kept in plan.items():
        layer = slim.get_submodule(name)
        k = kept.numel()
        n = sum(p.numel() for p in layer.parameters())
        if isinstance(layer, Attention):
            assert n == 3 * d * k + k * d + d           # qk (2dk) + v (dk), no bias; proj kd + d
        else:
            assert isinstance(layer, Mlp) and n == d * k + k + k * d + d


def test_head_rounding_modes():
    m = _gated_tnt(**{"vtp.gate_inner": False})
    for mode in ("multiple", "uniform"):
        plan = prune_plan(m, 0.45, "global", mode)
        for name, kept in plan.items():
            layer = m.get_submodule(name)
            if isinstance(layer, Attention):
                assert kept.numel() % layer.num_heads == 0
                if mode == "uniform":
                    slim = layer.pruned(kept)
                    assert len(set(slim.head_dims)) == 1


def test_global_threshold_prunes_the_requested_fraction():
    m = _gated_tnt()
    total = sum(g.dim for g in gates(m))
    for rate in (0.1, 0.3, 0.55):
        plan = prune_plan(m, rate, "global", "none")
        pruned = total - sum(k.numel() for k in plan.values())
        assert abs(pruned / total - rate) <= 1.0 / total
        # global: every pruned score is <= every kept score
        layers = dict(gated_layers(m))
        kept_scores, pruned_scores = [], []
        for name, kept in plan.items():
            s = layers[name].gate.score.detach().abs()
            mask = torch.zeros(s.numel(), dtype=torch.bool)
            mask[kept] = True
            kept_scores.append(s[mask])
            pruned_scores.append(s[~mask])
        assert torch.cat(pruned_scores).max() <= torch.cat(kept_scores).min()


def test_rate_zero_prunes_nothing_and_min_keep_holds():
    m = _gated_tnt()
    plan = prune_plan(m, 0.0, "global", "none")
    assert all(k.numel() == layer.gate.dim for (name, layer), k in zip(gated_layers(m), plan.values()))
    with torch.no_grad():
        for g in gates(m):
            g.score.zero_()
    plan = prune_plan(m, 0.99, "per_layer", "none", min_keep=1)
    assert all(k.numel() >= 1 for k in plan.values())


def test_l1_helpers():
    m = _gated_tnt()
    expected = sum(float(g.score.detach().abs().sum()) for g in gates(m))
    assert float(gate_l1(m).detach()) == pytest.approx(expected, rel=1e-6)
    for g in gates(m):
        g.score.grad = None
    with torch.no_grad():
        gates(m)[0].score[0] = -0.5
    add_l1_subgradient(m, 1e-2)
    g0 = gates(m)[0]
    assert torch.allclose(g0.score.grad, 1e-2 * torch.sign(g0.score))


def test_placements_choose_gated_layers():
    only_mlp = _gated_tnt(**{"vtp.placement": "mlp_hidden_only", "vtp.gate_inner": False})
    assert all(isinstance(layer, Mlp) for _, layer in gated_layers(only_mlp))
    only_attn = _gated_tnt(**{"vtp.placement": "qkv_out_only", "vtp.gate_inner": False})
    assert all(isinstance(layer, Attention) for _, layer in gated_layers(only_attn))
    assert len(gated_layers(only_attn)) == 2


def test_config_validation_and_errors():
    with pytest.raises(ValueError, match="prune_rate"):
        VTPConfig(prune_rate=1.0)
    with pytest.raises(ValueError, match="scope"):
        VTPConfig(scope="everywhere")
    plain = build("tnt", get_space("tnt").default(), input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match="no VTP gates"):
        prune_plan(plain, 0.3)
    with pytest.raises(ValueError, match="dim"):
        ChannelGate(0)


def test_builder_attaches_recipe_config():
    m = _gated_tnt(**{"vtp.threshold_scope": "per_block", "vtp.block0.keep_ratio": 0.4, "vtp.block1.keep_ratio": 0.9})
    cfg = m.vtp_config
    assert cfg.scope == "per_block" and cfg.block_keep == {0: 0.4, 1: 0.9}
    plan = prune_plan(m, cfg.prune_rate, cfg.scope, "none", cfg.block_keep)
    per_block = {0: [0, 0], 1: [0, 0]}
    for (name, layer) in gated_layers(m):
        b = int(name.split(".")[1])
        per_block[b][0] += plan[name].numel()
        per_block[b][1] += layer.gate.dim
    assert per_block[0][0] / per_block[0][1] == pytest.approx(0.4, abs=0.02)
    assert per_block[1][0] / per_block[1][1] == pytest.approx(0.9, abs=0.02)


def test_gated_workloads_include_gate_and_slim_workloads_shrink():
    from hw_cost.trace import trace_workloads

    m = _gated_tnt(**{"vtp.gate_inner": False})
    wl, unc = trace_workloads(m, (1, 3, 16, 16))
    assert unc == [] and any(w["name"].endswith("attn_out.gate") for w in wl)
    slim = apply_prune_plan(copy.deepcopy(m), prune_plan(m, 0.5))
    wl2, unc2 = trace_workloads(slim, (1, 3, 16, 16))
    assert unc2 == []
    macs = lambda ws: sum(w["ops"] for w in ws if w["op"] in ("linear", "matmul"))  # noqa: E731
    assert macs(wl2) < macs(wl)
    assert math.isfinite(macs(wl2))
