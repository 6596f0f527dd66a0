"""The ``fbnet`` space (HW-NAS-Bench layout) and builder options (``space_options``)."""

from __future__ import annotations

import pytest

import spaces
from spaces.fbnet import CHANNELS, OPS, layer_plan
from spaces.fbnet_workloads import fbnet_workloads


def test_space_layout_matches_hw_nas_bench():
    sp = spaces.get_space("fbnet")
    assert len(sp) == 22 and all(sp[f"layer{i}.op"].choices == OPS for i in range(1, 23))
    plan = layer_plan("cifar")
    assert [c for _, c, _ in plan] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + [184] * 4 + [352]
    assert [s for _, _, s in plan if s == 2] == [2, 2, 2] and CHANNELS[-1] == 352


def test_rows_follow_the_published_structure():
    arch = spaces.get_space("fbnet").preset("all-skip")
    rows = fbnet_workloads(arch, (1, 3, 32, 32))
    # all-skip: stem, the six shape-changing 1x1 convs, header, classifier
    assert sum(r["op"] == "conv" for r in rows) == 1 + 6 + 1
    assert rows[-1]["out_channels"] == 100 and rows[-1]["in_channels"] == 1504
    dw = fbnet_workloads(spaces.get_space("fbnet").preset("all-k5_e6"), (1, 3, 32, 32))
    d = next(r for r in dw if r["name"] == "cells.5.conv2")   # the first stride-2 depthwise conv
    assert d["op"] == "dwconv" and d["in_elems"] == 4 * d["out_elems"]   # reads the full map at stride 2
    assert all(r.get("fused") for r in dw if r["op"] in ("norm", "eltwise", "pixel_shuffle"))


def test_space_options_reach_builder_and_workloads():
    sp = spaces.get_space("fbnet").with_options({"setting": "imagenet"})
    arch = sp.default()
    rows = sp.workloads(arch, (1, 3, 64, 64))
    assert rows[-1]["in_channels"] == 1984 and rows[0]["out_pixels"] == 32 * 32   # stride-2 stem
    back = spaces.SearchSpace.from_dict(sp.to_dict())
    assert back.options == {"setting": "imagenet"}
    assert sp.restricted({"layer1.op": ["skip"]}).options == {"setting": "imagenet"}
    with pytest.raises(ValueError, match="space_options.setting"):
        spaces.get_space("fbnet").with_options({"setting": "mnist"}).workloads(arch, (1, 3, 32, 32))


def test_builder_gets_the_options():
    torch = pytest.importorskip("torch")
    import supernets

    sp = spaces.get_space("fbnet").with_options({"setting": "imagenet"})
    model = supernets.build(sp, sp.default(), input_shape=(3, 64, 64), num_classes=5)
    assert model.fc.in_features == 1984 and model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_config_rejects_unknown_space_option(tmp_path):
    from search.config import load_config
    from search.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("name: t\nspace: fbnet\nspace_options: {settng: imagenet}\n")
    with pytest.raises(ConfigError, match="space_options.settng.*setting"):
        load_config(p)
    p.write_text("name: t\nspace: fbnet\nspace_options: {setting: imagenet}\n")
    assert load_config(p).space_options == {"setting": "imagenet"}
