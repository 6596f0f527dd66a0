"""DeFeat's six CPU checks (techniques/vision-generative-detection.md section 3) on our losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from evaluators.detection.defeat import (DeFeatLoss, dense_logits, gt_masks, head_loss, kd_weight, make_adapter, map_roi_levels,
                                         neck_loss, tempered_kl)
from evaluators.detection.targets import assign, detection_loss

STRIDES = (4, 8, 16, 32, 64)
SIZES = [(200, 200), (100, 100), (50, 50), (25, 25), (13, 13)]  # an 800 x 800 image


def test_mask_level_assignment_follows_the_release_rule():
    small = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    large = torch.tensor([[40.0, 80.0, 340.0, 380.0]])  # 300 x 300: scale 301 -> floor(log2(5.375)) = 2 -> P4
    assert map_roi_levels(small, 5).tolist() == [0]
    assert map_roi_levels(large, 5).tolist() == [2]
    masks = gt_masks([small, large], SIZES, STRIDES)
    assert [int(m[0].sum()) for m in masks] == [25 * 25, 0, 0, 0, 0]  # P2 only: cells [0:25, 0:25]
    assert masks[0][0, :25, :25].all()
    expected = torch.zeros(50, 50)
    expected[int(80 / 16):int(380 / 16), int(40 / 16):int(340 / 16)] = 1  # [ly:ry, lx:rx] after int(x / stride)
    assert torch.equal(masks[2][1], expected)
    assert all(int(masks[k][1].sum()) == 0 for k in (0, 1, 3, 4))


def test_degenerate_box_marks_one_cell_and_all_levels_mode():
    tiny = torch.tensor([[9.0, 9.0, 10.0, 10.0]])  # int(9/4) == int(10/4): one cell (2, 2) on P2
    m = gt_masks([tiny], SIZES, STRIDES)
    assert int(m[0].sum()) == 1 and m[0][0, 2, 2] == 1
    every = gt_masks([torch.tensor([[0.0, 0.0, 128.0, 128.0]])], SIZES, STRIDES, mode="gt_all_levels")
    assert all(int(x.sum()) > 0 for x in every)


def _feats(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, h, w, generator=g) for h, w in shapes]


def test_normalisation_half_per_element_and_the_diluted_object_term():
    shapes = [(8, 8), (4, 4), (2, 2), (2, 2), (1, 1)]
    t = _feats(shapes)
    s = [x + 1.0 for x in t]
    masks = [torch.zeros(2, h, w) for h, w in shapes]
    masks[0][0, 2:5, 1:3] = 1  # object cells on level 0 only
    obj_levels = []
    for lvl in range(5):
        _, l_obj, l_bg = neck_loss([s[lvl]], [t[lvl]], [masks[lvl]], 1.0, 1.0)
        obj_levels.append(float(l_obj))
        assert float(l_bg) == pytest.approx(0.5)
    assert obj_levels == [pytest.approx(0.5), 0.0, 0.0, 0.0, 0.0]
    total, l_obj, l_bg = neck_loss(s, t, masks, 3.0, 12.0)
    assert float(l_obj) == pytest.approx(0.5 / 5)  # the empty levels still count in the mean
    assert float(l_bg) == pytest.approx(0.5)
    assert float(total) == pytest.approx(3.0 * 0.1 + 12.0 * 0.5)
    ones = [torch.ones(2, h, w) for h, w in shapes]
    _, l_obj, l_bg = neck_loss(s, t, ones, 1.0, 1.0)
    assert float(l_obj) == pytest.approx(0.5) and float(l_bg) == 0.0


def _outputs(seed=0, k=4):
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 8), (4, 4), (2, 2)]
    return {"features": [torch.randn(2, 6, h, w, generator=g) for h, w in shapes],
            "cls_logits": [torch.randn(2, k + 1, h, w, generator=g) for h, w in shapes]}


def test_zero_at_identity():
    out = _outputs()
    cfg = {"method": "defeat", "adapter": "identity", "alpha_obj": 3.0, "alpha_bg": 12.0, "beta_obj": 2.0, "beta_bg": 2.0,
           "T_obj": 2.0, "T_bg": 3.0}
    loss = DeFeatLoss(cfg, 6, 6, 3)
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.zeros(0, 4)]
    labels = torch.full((2 * (64 + 16 + 4),), 4)
    labels[:5] = 1
    r = loss(out, out, boxes, labels, 4, (4, 8, 16), 12.0)
    assert float(r["kd_loss"]) == 0.0
    assert float(r["kd_neck_obj"]) == 0.0 and float(r["kd_head_pos"]) == 0.0 and float(r["kd_head_neg"]) == 0.0


def test_temperature_squared_scaling_keeps_gradients_order_one():
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(32, 11, generator=g), torch.randn(32, 11, generator=g)
    for T in (1.0, 2.0, 4.0):
        pt, ps = F.softmax(zt / T, 1), F.softmax(zs / T, 1)
        plain = (pt * (pt.log() - ps.log())).sum(1).mean()
        assert float(tempered_kl(zs, zt, T)) / T**2 == pytest.approx(float(plain), rel=1e-5)
    norms = {}
    for T in (1.0, 8.0, 32.0):
        z = zs.clone().requires_grad_(True)
        tempered_kl(z, zt, T).backward()
        norms[T] = float(z.grad.norm())
    assert 0.2 < norms[32.0] / norms[1.0] < 5.0  # O(1) with the T^2 factor (without it: ~1/T^2)
    z = zs.clone().requires_grad_(True)
    (tempered_kl(z, zt, 32.0) / 32.0**2).backward()
    assert float(z.grad.norm()) / norms[1.0] < 0.01


def test_adapter_initialisation_is_tiny_not_identity():
    torch.manual_seed(0)
    a = make_adapter("conv3x3", 16, 32)
    assert a.weight.abs().max() < 2e-4 and a.kernel_size == (3, 3) and a.padding == (1, 1)
    x = torch.randn(2, 16, 8, 8)
    y = a(x)
    assert torch.allclose(y, a.bias.view(1, -1, 1, 1).expand_as(y), atol=1e-2)  # output ~ its bias
    assert not torch.allclose(make_adapter("conv3x3", 16, 16)(x), x, atol=0.1)
    with pytest.raises(ValueError, match="identity"):
        make_adapter("identity", 16, 32)


def test_split_consistency_of_the_head_loss():
    torch.manual_seed(0)
    k = 3
    sizes, strides = [(8, 8), (4, 4), (2, 2)], (4, 8, 16)
    targets = [{"boxes": torch.tensor([[2.0, 2.0, 14.0, 14.0], [10.0, 12.0, 30.0, 31.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    out = {"cls_logits": [torch.randn(2, k + 1, h, w) for h, w in sizes], "box_ltrb": [torch.rand(2, 4, h, w) * 8 for h, w in sizes]}
    det = detection_loss(out, targets, strides, k, 12.0)
    labels = det["labels"]
    total = 2 * sum(h * w for h, w in sizes)
    pos, neg = int((labels != k).sum()), int((labels == k).sum())
    assert pos > 0 and pos + neg == total  # every location is a proposal, in exactly one set
    ref_labels, _ = assign(targets, sizes, strides, k, 12.0)
    assert torch.equal(labels, ref_labels.flatten())  # the split comes from the assignment of these logits
    teacher = [torch.randn_like(c) for c in out["cls_logits"]]
    zs, zt = dense_logits(out["cls_logits"]), dense_logits(teacher)
    _, kl_pos, kl_neg = head_loss(zs, zt, labels, k, beta_obj=1, beta_bg=1, T_obj=1, T_bg=1)
    rows = labels != k
    manual = F.kl_div(F.log_softmax(zs[rows], 1), F.softmax(zt[rows], 1), reduction="sum") / pos
    assert float(kl_pos) == pytest.approx(float(manual), rel=1e-6)
    # an empty set gives 0
    _, kl_pos, _ = head_loss(zs, zt, torch.full_like(labels, k), k, beta_obj=1, beta_bg=1, T_obj=1, T_bg=1)
    assert float(kl_pos) == 0.0


def test_fitnet_is_the_all_ones_neck_loss_and_schedules():
    out = _outputs()
    t = _outputs(seed=3)
    fit = DeFeatLoss({"method": "fitnet", "adapter": "identity", "alpha_obj": 2.0}, 6, 6, 3)
    r = fit(out, t, [torch.zeros(0, 4)] * 2, torch.zeros(168, dtype=torch.long), 4, (4, 8, 16), 12.0)
    ref = sum(((s - q) ** 2).sum() / (2 * s.numel()) for s, q in zip(out["features"], t["features"])) / 3
    assert float(r["kd_loss"]) == pytest.approx(2.0 * float(ref), rel=1e-5)
    assert float(r["kd_neck_bg"]) == 0.0 and float(r["kd_head_pos"]) == 0.0
    assert kd_weight("constant", 5, 10) == 1.0 and kd_weight("linear_decay", 5, 10) == 0.5
    assert kd_weight("cosine_decay", 0, 10) == 1.0 and kd_weight("cosine_decay", 10, 10) == pytest.approx(0.0)
    assert math.isclose(kd_weight("cosine_decay", 5, 10), 0.5)


def test_fgfi_mask_marks_priors_above_half_the_best_iou():
    # one level, stride 8, priors 32 px on a side (ratios 0.5 / 1 / 2); the GT box is exactly the
    # square prior of cell (3, 3). Best IoU 1 -> threshold 0.5: the square priors one cell away
    # overlap 24 x 32 -> IoU 768 / 1280 = 0.6 (marked); two cells away 0.33 and diagonal 0.39 (not);
    # the elongated priors add no cell beyond those. So the mask is the plus shape around (3, 3).
    box = torch.tensor([[12.0, 12.0, 44.0, 44.0]])
    m = gt_masks([box], [(8, 8)], [8], mode="fgfi_roi")[0][0]
    expected = torch.zeros(8, 8)
    for y, x in ((3, 3), (2, 3), (4, 3), (3, 2), (3, 4)):
        expected[y, x] = 1
    assert torch.equal(m, expected)
    looser, stricter = (gt_masks([box], [(8, 8)], [8], mode="fgfi_roi", fgfi_psi=p)[0][0] for p in (0.3, 0.9))
    assert bool((stricter <= m).all() and (m <= looser).all()) and int(looser.sum()) > 5 and int(stricter.sum()) == 1
    # across levels the best prior decides: a 12 px box fits the stride-4 priors (16 px), never the 64 px ones
    two = gt_masks([torch.tensor([[20.0, 20.0, 32.0, 32.0]])], [(16, 16), (4, 4)], [4, 16], mode="fgfi_roi")
    assert int(two[0].sum()) > 0 and int(two[1].sum()) == 0


def test_fgfi_is_a_search_choice_that_reaches_the_loss():
    from spaces import get_space

    space = get_space("detector")
    arch = space.complete({**space.preset("student-defeat"), "defeat.mask": "fgfi_roi"})
    assert arch["defeat.fgfi_psi"] == 0.5 and "defeat.fgfi_psi" not in space.complete(space.preset("student-defeat"))
    import supernets

    model = supernets.build(space, {**arch, "defeat.fgfi_psi": 0.7}, input_shape=(1, 32, 32), num_classes=10)
    assert model.distill_config["mask"] == "fgfi_roi" and model.distill_config["fgfi_psi"] == 0.7
    loss = DeFeatLoss({"method": "defeat", "mask": "fgfi_roi", "fgfi_psi": 0.7, "adapter": "identity"}, 3, 3, 1)
    assert loss.mask == "fgfi_roi" and loss.fgfi_psi == 0.7
    with pytest.raises(ValueError, match="fgfi_psi"):
        gt_masks([torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [(4, 4)], [4], mode="fgfi_roi", fgfi_psi=0.0)
