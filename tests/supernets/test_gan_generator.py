"""The GAN generator spaces, builders and supernets: groups, skipped blocks, extraction parity,
slimmable weight sharing, strict fairness over the generator's choice layers."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import hw_cost
import supernets
from spaces import get_space
from spaces.gan_generator import GROUPS, OPS, dimension_group, dimension_groups
from supernets.gan_supernet import SuperCell
from supernets.resnet_supernet import SharedConv
from supernets.sampling import make_path_sampler
from supernets.supernet import SlicedConv2d

SHAPE = (3, 16, 16)
SR_SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return supernets.build_supernet("gan-generator", input_shape=SHAPE, num_classes=0)


@pytest.fixture(scope="module")
def sr_supernet():
    torch.manual_seed(0)
    return supernets.build_supernet("gan-generator-sr", input_shape=SR_SHAPE, num_classes=0, scale=2, base_width=8)


@pytest.mark.parametrize("name", ["gan-generator", "gan-generator-sr"])
def test_every_searched_dimension_has_a_group(name):
    sp = get_space(name)
    groups = dimension_groups(sp)
    assert set(groups) == set(GROUPS) and all(groups[g] for g in GROUPS)
    ungrouped = [lab for lab in sp.labels if dimension_group(lab) is None]
    assert ungrouped == (["sr.scale"] if name.endswith("-sr") else [])
    assert "body.b1.keep" not in sp.labels  # at least one block per stage: the first always runs
    assert dimension_groups(sp.restricted({"body.b2.op": ["conv3x3"]})) == groups


def test_skipped_block_is_identity_and_costs_nothing():
    sp = get_space("gan-generator")
    kept = sp.default()
    skipped = sp.complete({**kept, "body.b3.keep": False})
    assert "body.b3.op" not in skipped  # operator and channel of a skipped block are inactive
    m_kept = supernets.build(sp, kept, input_shape=SHAPE)
    m_skip = supernets.build(sp, skipped, input_shape=SHAPE)
    cell = m_skip.cells["body_b3"]
    assert isinstance(cell, nn.Identity)
    x = torch.randn(2, 64, 4, 4)
    assert torch.equal(cell(x), x)
    r_kept = hw_cost.estimate(m_kept, (1, *SHAPE), device="zcu104")
    r_skip = hw_cost.estimate(m_skip, (1, *SHAPE), device="zcu104")
    assert any("body_b3" in r.name for r in r_kept.rows)
    assert not any("body_b3" in r.name for r in r_skip.rows)
    assert not r_skip.uncosted
    others = [r for r in r_kept.rows if "body_b3" not in r.name]
    assert [r.name for r in others] == [r.name for r in r_skip.rows]
    assert r_skip.ops < r_kept.ops and r_skip.energy_mj < r_kept.energy_mj


def _archs(sp, n, seed, fix=None):
    rng = random.Random(seed)
    out = [sp.default()]
    while len(out) < n:
        a = sp.sample(rng)
        out.append(sp.complete({**a, **(fix or {})}))
    return out


def test_extract_equals_active_path_translation(supernet):
    supernet.eval()
    torch.manual_seed(1)
    x = torch.rand(2, *SHAPE)
    archs = _archs(supernet.space, 6, seed=3)
    archs.append(supernet.space.complete({"enc.d1.family": "adder", "enc.d1.bits": 8, "body.b1.op": "dwsep",
                                          "body.b1.width": 0.375, "unet.skip1": True, "unet.skip2": True}))
    for arch in archs:
        supernet.set_active(arch)
        y = supernet(x)
        model = supernet.extract()
        model.eval()
        assert type(model).__name__ == "TranslationGenerator"
        assert torch.equal(model(x), y), arch


def test_extract_equals_active_path_sr(sr_supernet):
    sr_supernet.eval()
    x = torch.rand(2, *SR_SHAPE)
    for arch in _archs(sr_supernet.space, 5, seed=4, fix={"sr.scale": 2}):
        sr_supernet.set_active(arch)
        y = sr_supernet(x)
        assert y.shape == (2, 3, 16, 16)
        model = sr_supernet.extract()
        model.eval()
        assert torch.equal(model(x), y), arch


def test_extracted_is_what_build_makes(supernet):
    arch = supernet.space.sample(11)
    model = supernet.extract(arch)
    built = supernets.build("gan-generator", arch, input_shape=SHAPE)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in built.state_dict().items()}


def test_slimmable_width_is_the_leading_block_of_the_widest_weight(supernet):
    arch = supernet.space.complete({"enc.d1.width": 0.5, "enc.d1.op": "conv3x3", "enc.stem.width": 0.75})
    supernet.set_active(arch)
    model = supernet.extract()
    w_sub = model.cells["enc_d1"].op.conv.weight
    w_full = supernet.net.cells["enc_d1"].choices["conv3x3-conv"].conv.main.weight
    k_out, k_in = w_sub.shape[:2]
    assert (k_out, k_in) == (16, 12)
    assert torch.equal(w_sub, w_full[:k_out, :k_in])


def test_slimmable_output_equals_full_layer_with_other_channels_zeroed():
    torch.manual_seed(0)
    layer = SlicedConv2d(8, 6, 3, 1, 1, bias=False)
    x = torch.randn(2, 3, 5, 5)
    layer.active_out_channels = 4
    y = layer(x)
    layer.active_out_channels = None
    padded = torch.cat([x, torch.zeros(2, 5, 5, 5)], dim=1)
    assert torch.allclose(y, layer(padded)[:, :4], atol=1e-6)


def test_bits_twin_quantises_the_shared_float_weight(supernet):
    conv = supernet.net.cells["body_b1"].choices["conv3x3-adder"].conv
    assert isinstance(conv, SharedConv) and conv.quant is not None
    assert conv.quant.weight is conv.main.weight


def test_operator_choices_own_their_weights(supernet):
    choices = supernet.net.cells["body_b2"].choices
    assert set(choices) == {f"{op}-{fam}" for op in OPS for fam in ("conv", "adder")}
    ptrs = {id(p) for m in choices.values() for p in m.parameters()}
    assert len(ptrs) == sum(1 for m in choices.values() for _ in m.parameters())


def test_fixed_path_drops_the_skipped_cells_choice_layers():
    sp = get_space("gan-generator")
    path = {lab: False for lab in dimension_groups(sp)["path"]}
    sn = supernets.build_supernet(sp, input_shape=SHAPE, num_classes=0, fixed=path)
    labels = {layer.label for layer in sn.choice_layers()}
    assert not any(dimension_group(lab) == "path" for lab in labels)
    assert not any(lab.startswith(("body.b2.", "body.b6.")) for lab in labels)
    assert {"body.b1.op", "enc.d1.width", "dec.u2.bits"} <= labels
    assert isinstance(sn.net.cells["body_b4"], nn.Identity) and not len(sn.net.skips)
    with pytest.raises(ValueError, match="body.b2.keep"):
        sn.set_active({"body.b2.keep": True})


def test_strict_fair_sampler_trains_every_operator_once_per_step():
    sp = get_space("gan-generator")
    groups = dimension_groups(sp)
    default = sp.default()
    fixed = {lab: default[lab] for lab in groups["path"] + groups["channel"] if lab in default}
    fixed.update({lab: 32 for lab in groups["operator"] if lab.endswith(".bits")})
    fixed.update({lab: "conv" for lab in groups["operator"] if lab.endswith(".family")})
    sn = supernets.build_supernet(sp, input_shape=(3, 8, 8), num_classes=0, fixed=fixed, base_width=4)
    layers = sn.choice_layers()
    assert {layer.label.rsplit(".", 1)[-1] for layer in layers} == {"op"}
    sampler = make_path_sampler("strict-fair", layers, seed=0)
    sn.train()
    x = torch.rand(2, 3, 8, 8)
    steps = 2
    for _ in range(steps):
        for path in sampler.paths():
            sn.set_active(path)
            sn(x).mean().backward()
    for layer in layers:
        assert all(sampler.count(layer.label, c) == steps for c in layer.choices)
    for cell in sn.net.cells.values():
        if isinstance(cell, SuperCell):
            for key, op in cell.choices.items():
                if key.endswith("-conv"):
                    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in op.parameters()), key


def test_sr_layout_trains_with_the_sr_evaluator():
    import evaluators

    sp = get_space("gan-generator-sr").with_options({"base_width": 8})
    arch = sp.complete({"sr.scale": 2, **{f"body.b{i}.keep": False for i in range(3, 9)}, "body.b2.op": "dwsep"})
    dm = evaluators.get_datamodule("skimage-sr", scale=2, images=("camera.png", "coins.png", "moon.png"), patch_size=8,
                                   patches_per_epoch=8, val_patch_size=16, val_patches_per_image=2, batch_size=4)
    model = supernets.build(sp, arch, **dm.builder_kwargs())
    out = evaluators.evaluate(model, datamodule=dm, epochs=1, optimizer="adam", lr=1e-3, weight_decay=0.0)
    assert out["val_psnr"] > 0 and out["size_mb"] == pytest.approx(sum(p.numel() for p in model.parameters()) * 4e-6)
    with pytest.raises(ValueError, match="sr.scale"):
        supernets.build(sp, arch, input_shape=(3, 8, 8), scale=3)


@pytest.mark.parametrize("name,options,shape", [("gan-generator", {"base_width": 8, "norm": "none"}, (2, 3, 16, 24)),
                                                ("gan-generator-sr", {"norm": "instance", "base_width": 8}, (1, 1, 8, 12))])
def test_workloads_fn_equals_tracing_with_space_options(name, options, shape):
    from hw_cost.trace import trace_workloads

    sp = get_space(name).with_options(options)
    rng = random.Random(5)
    for _ in range(6):
        arch = sp.sample(rng)
        model = supernets.build(sp, arch, input_shape=shape[1:])
        ref, uncosted = trace_workloads(model, shape, default_bits=8)
        assert not uncosted
        assert [dict(r) for r in sp.workloads(arch, shape, default_bits=8)] == [dict(r) for r in ref]


def test_strict_fair_step_gradient_is_the_sum_of_single_path_gradients():
    torch.manual_seed(0)
    sp = get_space("gan-generator")
    groups, default = dimension_groups(sp), sp.default()
    fixed = {lab: default[lab] for lab in groups["path"] + groups["channel"] if lab in default}
    fixed.update({lab: 32 for lab in groups["operator"] if lab.endswith(".bits")})
    sn = supernets.build_supernet(sp, input_shape=(3, 8, 8), num_classes=0, fixed=fixed, base_width=4).double()
    paths = make_path_sampler("strict-fair", sn.choice_layers(), seed=1).paths()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    singles = []
    for path in paths:
        sn.zero_grad()
        sn.set_active(path)
        sn(x).square().mean().backward()
        singles.append({n: p.grad.clone() for n, p in sn.named_parameters() if p.grad is not None})
    sn.zero_grad()
    total = 0
    for path in paths:
        sn.set_active(path)
        total = total + sn(x).square().mean()
    total.backward()
    for name, p in sn.named_parameters():
        expected = sum((s[name] for s in singles if name in s), torch.zeros_like(p))
        got = p.grad if p.grad is not None else torch.zeros_like(p)
        assert torch.allclose(got, expected, atol=1e-10), name
