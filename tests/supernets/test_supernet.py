"""The addernet-resnet supernet: extraction parity, weight sharing, recalibration, samplers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import supernets
from spaces import get_space
from supernets.sampling import ChoiceLayer, make_path_sampler
from supernets.supernet import SlicedBatchNorm2d, prefix_slice


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return supernets.build_supernet("addernet-resnet", input_shape=(1, 8, 8), num_classes=10)


def _arch(op: str, width: float, blocks: int, bits: int = 32) -> dict:
    a = {}
    for s in (1, 2, 3):
        a.update({f"stage{s}.op": op, f"stage{s}.width": width, f"stage{s}.blocks": blocks})
        if op in ("conv", "adder"):
            a[f"stage{s}.bits"] = bits
    return a


CASES = [
    ("conv", 1.0, 3, 32), ("conv", 0.5, 2, 8), ("conv", 0.25, 1, 4),
    ("adder", 1.0, 2, 32), ("adder", 0.75, 1, 16), ("adder", 0.25, 3, 8),
    ("winograd_adder", 0.5, 1, 32), ("winograd_adder", 1.0, 2, 32),
    ("binary", 0.75, 2, 32), ("binary", 0.25, 1, 32),
]


@pytest.mark.parametrize("op,width,blocks,bits", CASES)
def test_extracted_output_equals_active_path(supernet, op, width, blocks, bits):
    torch.manual_seed(1)
    x = torch.randn(8, 1, 8, 8)
    supernet.set_active(_arch(op, width, blocks, bits))
    supernets.recalibrate(supernet, [torch.randn(16, 1, 8, 8) for _ in range(2)])
    supernet.eval()
    y = supernet(x)
    model = supernet.extract()
    assert type(model).__name__ == "AdderResNet"
    model.eval()
    assert torch.equal(model(x), y)


def test_mixed_families_and_extract_by_arch(supernet):
    arch = {"stage1.op": "binary", "stage1.width": 0.5, "stage1.blocks": 2,
            "stage2.op": "adder", "stage2.bits": 8, "stage2.width": 1.0, "stage2.blocks": 1,
            "stage3.op": "conv", "stage3.bits": 4, "stage3.width": 0.75, "stage3.blocks": 3}
    supernet.set_active(arch)
    supernets.recalibrate(supernet, [torch.randn(16, 1, 8, 8)])
    supernet.eval()
    x = torch.randn(4, 1, 8, 8)
    y = supernet(x)
    supernet.set_active(_arch("conv", 1.0, 3))  # extract(arch) does not depend on the active path
    model = supernet.extract(arch).eval()
    assert torch.equal(model(x), y)


def test_extracted_is_what_build_makes(supernet):
    arch = _arch("adder", 0.5, 2, 8)
    full = supernet.complete(arch)
    model = supernet.extract(arch)
    ref = supernets.build("addernet-resnet", full, input_shape=(1, 8, 8), num_classes=10)
    assert [type(m) for m in model.modules()] == [type(m) for m in ref.modules()]
    assert {k: v.shape for k, v in model.state_dict().items() if hasattr(v, "shape")} == \
        {k: v.shape for k, v in ref.state_dict().items() if hasattr(v, "shape")}


@pytest.mark.parametrize("op", ["conv", "adder", "winograd_adder", "binary"])
def test_width_slice_is_leading_block_of_widest_weight(supernet, op):
    model = supernet.extract(_arch(op, 0.5, 1))
    shared = supernet.stages[1][op][0]
    w2 = model.blocks[1].conv1.weight  # stage 2, block 0: 8 -> 16 channels
    assert w2.shape[:2] == (16, 8)
    assert torch.equal(w2, shared.conv1.main.weight[:16, :8])
    assert torch.equal(model.blocks[1].conv2.weight, shared.conv2.main.weight[:16, :16])
    assert torch.equal(model.blocks[1].bn1.running_mean, shared.bn1.running_mean[:16])


def test_bits_twins_quantise_the_same_float_weights(supernet):
    for op in ("conv", "adder"):
        conv = supernet.stages[0][op][0].conv1
        assert conv.quant.weight is conv.main.weight
    params = {id(p) for p in supernet.parameters()}
    assert len(params) == len(list(supernet.parameters()))  # tied weights are one parameter


def test_families_own_separate_weights(supernet):
    ws = [supernet.stages[0][op][0].conv1.main.weight for op in ("conv", "adder", "winograd_adder", "binary")]
    assert len({id(w) for w in ws}) == 4


def test_depth_uses_the_first_blocks(supernet):
    a1 = supernet.complete(_arch("conv", 1.0, 1))
    a3 = supernet.complete(_arch("conv", 1.0, 3))
    m1, m3 = supernet.extract(a1), supernet.extract(a3)
    # stage 1 block 0 of the 1-block net is the 3-block net's block 0
    assert torch.equal(m1.blocks[0].conv1.weight, m3.blocks[0].conv1.weight)
    assert len(m1.blocks) == 3 and len(m3.blocks) == 9


def test_cost_and_export_work_on_extracted(supernet, tmp_path):
    import hw_cost

    arch = supernet.complete(_arch("adder", 0.75, 2, 8))
    supernet.set_active(arch)
    supernets.recalibrate(supernet, [torch.randn(16, 1, 8, 8)])
    model = supernet.extract().eval()
    report = hw_cost.estimate(model, (1, 1, 8, 8))
    assert report.energy_mj > 0 and not report.uncosted
    supernets.save_exported(model, arch, "addernet-resnet", {"input_shape": (1, 8, 8), "num_classes": 10}, tmp_path)
    loaded = supernets.load_exported(tmp_path)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded.eval()(x), model(x))


def test_recalibration_is_the_mean_of_batch_statistics():
    bn = SlicedBatchNorm2d(8)
    net = nn.Sequential(bn).eval()
    batches = [torch.randn(5, 4, 3, 3) * (i + 1) + i for i in range(3)]
    supernets.recalibrate(net, batches)
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean[:4], means, atol=1e-6)
    assert torch.equal(bn.running_mean[4:], torch.zeros(4))  # unused channels untouched
    assert bn.momentum == 0.1 and not net.training


def test_prefix_slice_rejects_larger_shapes():
    with pytest.raises(ValueError, match="cannot take"):
        prefix_slice(torch.zeros(4, 4), (5, 4))


def test_fixed_recipe_may_not_be_contradicted(supernet):
    with pytest.raises(ValueError, match="recipe.adder_eta"):
        supernet.set_active({**_arch("adder", 1.0, 1), "recipe.adder_eta": 0.5})


def test_restricted_space_builds_only_its_families():
    space = get_space("addernet-resnet").restricted({f"stage{s}.op": ["conv", "binary"] for s in (1, 2, 3)} | {"stage1.width": [0.25, 0.5]})
    sn = supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10)
    assert set(sn.stages[0]) == {"conv", "binary"}
    assert sn.max_width[0] == 8
    layers = {l.label: l for l in sn.choice_layers()}
    assert layers["stage1.width"].choices == (0.25, 0.5) and not layers["stage1.op"].ordered


def test_manidp_is_rejected():
    with pytest.raises(ValueError, match="manidp"):
        supernets.build_supernet("addernet-resnet", input_shape=(1, 8, 8), num_classes=10, fixed={"manidp.enabled": True})


# -- samplers --------------------------------------------------------------------------------

LAYERS = [ChoiceLayer("op", ("a", "b", "c", "d"), ordered=False), ChoiceLayer("w", (1, 2, 3, 4)), ChoiceLayer("d", (1, 2))]


def test_strict_fair_counters_all_equal_n_after_n_steps():
    s = make_path_sampler("strict-fair", LAYERS, seed=3)
    n = 7
    for _ in range(n):
        paths = s.paths()
        assert len(paths) == 4
        for layer in LAYERS:  # within one step every choice appears m / m_l times
            col = [p[layer.label] for p in paths]
            assert sorted(col, key=repr) == sorted(list(layer.choices) * (4 // layer.m), key=repr)
    for layer in LAYERS:
        assert [s.count(layer.label, c) for c in layer.choices] == [n * 4 // layer.m] * layer.m


def test_strict_fair_with_uneven_choices_stays_balanced():
    s = make_path_sampler("strict-fair", [ChoiceLayer("a", (1, 2, 3, 4)), ChoiceLayer("b", (1, 2, 3))], seed=0)
    for _ in range(30):
        s.paths()
    counts = [s.count("b", c) for c in (1, 2, 3)]
    assert max(counts) - min(counts) <= 1 and sum(counts) == 120


def test_uniform_and_sandwich_paths():
    u = make_path_sampler("uniform", LAYERS, seed=0)
    assert len(u.paths()) == 1
    sw = make_path_sampler("sandwich", LAYERS, seed=0, n_random=3)
    paths = sw.paths()
    assert len(paths) == 5
    assert paths[0]["w"] == 4 and paths[0]["d"] == 2 and paths[1]["w"] == 1 and paths[1]["d"] == 1


def test_sampler_state_round_trip_continues_the_sequence():
    a = make_path_sampler("strict-fair", LAYERS, seed=5)
    for _ in range(3):
        a.paths()
    b = make_path_sampler("strict-fair", LAYERS, seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.paths() for _ in range(4)] == [b.paths() for _ in range(4)]
    assert b.counts == a.counts


MIXED = [
    {"stage1.op": "adder", "stage1.bits": 8, "stage1.width": 0.5, "stage1.blocks": 2, "stage2.op": "binary", "stage2.width": 0.25,
     "stage2.blocks": 1, "stage3.op": "conv", "stage3.bits": 4, "stage3.width": 1.0, "stage3.blocks": 3},
    {"stage1.op": "winograd_adder", "stage1.width": 0.25, "stage1.blocks": 1, "stage2.op": "conv", "stage2.bits": 32, "stage2.width": 0.75,
     "stage2.blocks": 2, "stage3.op": "binary", "stage3.width": 0.5, "stage3.blocks": 1},
]


@pytest.mark.parametrize("arch", MIXED)
def test_path_recalibration_equals_recalibrating_the_built_network(supernet, arch):
    """Recalibration touches the active path only and runs every non-statistics op as in
    evaluation: the supernet then scores exactly as its extracted network recalibrated alone."""
    torch.manual_seed(2)
    batches = [torch.randn(16, 1, 8, 8) for _ in range(2)]
    supernet.set_active(arch)
    model = supernet.extract().eval()
    other = "conv" if arch["stage2.op"] != "conv" else "adder"
    idle_bn = supernet.stages[1][other][0].bn1
    idle_before = idle_bn.running_mean.clone()
    supernet.train()
    supernets.recalibrate(supernet, batches)
    supernets.recalibrate(model, batches)
    assert supernet.training and not model.training  # modes restored
    supernet.eval()
    x = torch.randn(8, 1, 8, 8)
    assert torch.allclose(supernet(x), model(x), atol=1e-5)
    assert torch.equal(idle_bn.running_mean, idle_before)  # another family's statistics are not touched


@pytest.mark.parametrize("arch", MIXED + [_arch("conv", 0.25, 1, 8), _arch("binary", 1.0, 3)])
def test_path_size_equals_counting_the_built_network(supernet, arch):
    from search.problem import model_size

    full = supernet.complete(arch)
    ref = model_size(supernet.space, full, (1, 8, 8), 10)
    assert supernet.path_size(arch) == {k: ref[k] for k in ("params", "macs")}
