"""The ``detector`` space: built through ``supernets.build``, reusing the ResNet dimensions, costed by hw_cost."""

from __future__ import annotations

import pytest
import torch

import hw_cost
import supernets
from spaces import get_space
from spaces.addernet_resnet import backbone_dimensions
from supernets.resnet import BasicBlock


def test_backbone_dimensions_are_the_resnet_space_s():
    space = get_space("detector")
    resnet = get_space("addernet-resnet")
    for d in backbone_dimensions():
        assert space[d.label] == resnet[d.label] == d


@pytest.mark.parametrize("preset", ["teacher", "student", "student-defeat", "student-adder8-defeat"])
def test_presets_build_and_give_per_level_outputs(preset):
    space = get_space("detector")
    arch = space.preset(preset)
    model = supernets.build("detector", arch, input_shape=(1, 64, 64), num_classes=10)
    out = model(torch.randn(2, 1, 64, 64))
    assert [tuple(c.shape) for c in out["cls_logits"]] == [(2, 11, 16, 16), (2, 11, 8, 8), (2, 11, 4, 4)]
    assert [tuple(f.shape[1:2]) for f in out["features"]] == [(arch["fpn.channels"],)] * 3
    assert all((b >= 0).all() for b in out["box_ltrb"])
    assert any(isinstance(m, BasicBlock) for m in model.modules())
    assert model.distill_config["method"] == arch["defeat.method"]


def test_backbone_ops_follow_the_stage_dimensions():
    space = get_space("detector")
    arch = space.preset("student-adder8-defeat")
    model = supernets.build("detector", arch, input_shape=(3, 32, 32), num_classes=2)
    kinds = {type(m.conv1).__name__ for m in model.modules() if isinstance(m, BasicBlock)}
    assert kinds == {"QuantAdderConv2d"}
    arch = space.complete({**arch, "stage2.op": "binary", "head.bits": 8})
    model = supernets.build("detector", arch, input_shape=(3, 32, 32), num_classes=2)
    assert type(model.backbone.stages[1][0].conv1).__name__ == "BinaryConv2d"
    assert type(model.head.cls).__name__ == "QuantConv2d"


def test_hw_cost_traces_every_layer_and_cheaper_ops_cost_less():
    space = get_space("detector")
    costs = {}
    for preset in ("teacher", "student", "student-adder8-defeat"):
        model = supernets.build("detector", space.preset(preset), input_shape=(1, 64, 64), num_classes=10)
        report = hw_cost.estimate(model, (1, 1, 64, 64))
        assert report.uncosted == []
        names = [r.name for r in report.rows]
        assert any(n.startswith("head.cls") for n in names) and any(n.startswith("fpn.extra") for n in names)
        costs[preset] = report.energy_mj
    assert costs["teacher"] > costs["student"] > costs["student-adder8-defeat"]


def test_postprocess_decodes_boxes_and_applies_nms():
    space = get_space("detector")
    model = supernets.build("detector", space.preset("student"), input_shape=(1, 64, 64), num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 64, 64))
    # make location (row 2, col 3) of P3 (stride 4, centre (14, 10)) predict class 1 with box ltrb (4, 4, 4, 4)
    for c in out["cls_logits"]:
        c.fill_(0.0)
        c[:, 3] = 10.0
    out["cls_logits"][0][0, 1, 2, 3] = 20.0
    out["cls_logits"][0][0, 1, 2, 4] = 19.0  # a neighbour with a heavily overlapping box: suppressed
    out["box_ltrb"][0][0, :, 2, 3] = 4.0
    out["box_ltrb"][0][0, :, 2, 4] = torch.tensor([7.0, 4.0, 1.0, 4.0])  # [11, 6, 19, 14]: IoU 56 / 72 with the first
    res = model.postprocess(out, (64, 64))[0]
    assert res["labels"].tolist() == [1]
    assert res["boxes"][0].tolist() == pytest.approx([10.0, 6.0, 18.0, 14.0])
    out["box_ltrb"][0][0, :, 2, 4] = 4.0  # [14, 6, 22, 14]: IoU 32 / 96 < 0.5, both kept
    assert len(model.postprocess(out, (64, 64))[0]["boxes"]) == 2


def test_input_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 16"):
        supernets.build("detector", get_space("detector").default(), input_shape=(1, 8, 8), num_classes=2)
