"""``fbnet``: the FBNet cell space of HW-NAS-Bench (22 searchable inverted-residual layers).

The space whose published FPGA (ZC706) and Eyeriss latencies calibrate the cost model
(``shared/data/hw-nas-bench-fbnet``; docs/cost-model.md section 7). Layout of HW-NAS-Bench's
``FBNet_Infer`` (Li et al., ICLR 2021, arXiv 2103.10584; FBNet: Wu et al., CVPR 2019, arXiv
1812.03443): a 3x3 conv stem to 16 channels, 7 stages of [1, 4, 4, 4, 4, 4, 1] layers with
[16, 24, 32, 64, 112, 184, 352] channels, a 1x1 header conv, global average pooling and a
classifier. The first layer of a stage takes the stage's stride and channel change.

Each layer picks one of nine ops: ``kK_eE[_g2]`` is an inverted-residual block (1x1 conv to
E x C_in, groups 2 with ``_g2`` and a channel shuffle, K x K depthwise conv, 1x1 conv to C_out,
BN after each, ReLU after the first two, identity shortcut when shapes allow); ``skip`` is an
identity, or a 1x1 conv-BN-ReLU when the stride or the channel count changes.

Builder options (``space_options`` in a config): ``setting`` = "cifar" (default: stem and first
stage stride 1, header 1504, the HW-NAS-Bench CIFAR-100 data) or "imagenet" (strides 2, header 1984).
``builder`` and ``workloads_fn`` both take it, so the fast cost path and the traced model agree.
"""

from __future__ import annotations

from spaces.catalog import register_space
from spaces.dimensions import Categorical
from spaces.space import SearchSpace

FBNET = "FBNet (Wu et al., CVPR 2019, arXiv 1812.03443)"
HWNAS = "HW-NAS-Bench (Li et al., ICLR 2021, arXiv 2103.10584)"

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
LAYERS_PER_STAGE = (1, 4, 4, 4, 4, 4, 1)
CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STEM_CHANNELS = 16
SETTINGS = {
    # stem stride, per-stage strides, header channels
    "cifar": (1, (1, 1, 2, 2, 1, 2, 1), 1504),
    "imagenet": (2, (1, 2, 2, 2, 1, 2, 1), 1984),
}
N_LAYERS = sum(LAYERS_PER_STAGE)


def parse_op(op: str) -> tuple[int, int, int] | None:
    """``"k5_e3_g2"`` -> (kernel 5, expansion 3, groups 2); None for ``skip``."""
    if op == "skip":
        return None
    parts = op.split("_")
    return int(parts[0][1:]), int(parts[1][1:]), 2 if len(parts) > 2 else 1


def check_setting(setting: str) -> tuple[int, tuple[int, ...], int]:
    if setting not in SETTINGS:
        raise ValueError(f"space_options.setting: expected one of {sorted(SETTINGS)}, found {setting!r}")
    return SETTINGS[setting]


def layer_plan(setting: str = "cifar") -> list[tuple[int, int, int]]:
    """(C_in, C_out, stride) of the 22 searchable layers, in order."""
    _, strides, _ = check_setting(setting)
    plan, cin = [], STEM_CHANNELS
    for s, n in enumerate(LAYERS_PER_STAGE):
        for i in range(n):
            plan.append((cin, CHANNELS[s], strides[s] if i == 0 else 1))
            cin = CHANNELS[s]
    return plan


def fbnet_space() -> SearchSpace:
    dims = [
        Categorical(f"layer{i}.op", OPS, default="k3_e1", paper=f"{FBNET}; {HWNAS}",
                    help="kK_eE[_g2]: inverted residual, KxK depthwise, expansion E, grouped 1x1 convs with _g2; skip: identity (1x1 conv if the shape changes)")
        for i in range(1, N_LAYERS + 1)
    ]
    return SearchSpace(
        name="fbnet",
        description="FBNet cell space of HW-NAS-Bench: 22 layers x 9 ops (published ZC706 / Eyeriss latencies)",
        dimensions=dims,
        builder="supernets.fbnet:build_fbnet",
        workloads_fn="spaces.fbnet_workloads:fbnet_workloads",
        presets={"all-skip": {f"layer{i}.op": "skip" for i in range(1, N_LAYERS + 1)},
                 "all-k5_e6": {f"layer{i}.op": "k5_e6" for i in range(1, N_LAYERS + 1)}},
    )


register_space("fbnet")(fbnet_space)
