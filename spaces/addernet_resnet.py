"""``addernet-resnet``: a ResNet-20-style classifier with per-stage op, bits, width and depth.

Three stages of basic blocks (base widths 16, 32, 64; strides 1, 2, 2) after a standard conv
stem, as in AdderNet's ResNet-20 (``huawei-noah/AdderNet`` ``resnet20.py``). The builder sizes
the network to its data (8x8 digits by default, 32x32 for CIFAR-shaped data).
"""

from __future__ import annotations

from spaces.catalog import register_space
from spaces.dimensions import Categorical, Condition, FloatRange, IntRange
from spaces.space import SearchSpace

ADDERNET = "AdderNet (Chen et al., CVPR 2020, arXiv 1912.13200)"
ADDERNET_EXT = "Adder Neural Networks, extended (arXiv 2105.14202)"
WINOGRAD = "Winograd AdderNet (Li et al., ICML 2021, arXiv 2105.05530)"
ADDER_HW = "AdderNet hardware (Wang et al., arXiv 2101.10015)"
FDA = "FDA-BNN (Xu et al., NeurIPS 2021, arXiv 2103.00841)"
RESNET = "ResNet (He et al., CVPR 2016, arXiv 1512.03385)"
MANIDP = "ManiDP (Tang et al., CVPR 2021, arXiv 2103.05861)"

STAGES = 3
BASE_WIDTHS = (16, 32, 64)
OP_CHOICES = ("conv", "adder", "winograd_adder", "binary")
QUANTISABLE = ("conv", "adder")  # ops with a b-bit variant (QuantConv2d, QuantAdderConv2d)


def backbone_dimensions(stages: int = STAGES) -> list:
    """The per-stage op / bits / width / blocks dimensions (``stage{s}.*``), shared with every
    space whose backbone is this ResNet (the ``detector`` space reuses them)."""
    dims = []
    for s in range(1, stages + 1):
        dims += [
            Categorical(f"stage{s}.op", OP_CHOICES, default="conv", paper=f"{ADDERNET}; {WINOGRAD}; {FDA}",
                        help="3x3 (and shortcut) op of every block in the stage"),
            Categorical(f"stage{s}.bits", (32, 16, 8, 4), default=32, paper=ADDER_HW,
                        help="weight/activation bits; 32 = float; adders share one scale",
                        conditions=(Condition(f"stage{s}.op", QUANTISABLE),)),
            Categorical(f"stage{s}.width", (0.25, 0.5, 0.75, 1.0), default=1.0, paper=RESNET,
                        help=f"width multiplier of the stage's base width {BASE_WIDTHS[s - 1]}"),
            IntRange(f"stage{s}.blocks", low=1, high=3, default=3, paper=RESNET,
                     help="basic blocks in the stage (3 = ResNet-20)"),
        ]
    return dims


def recipe_dimensions() -> list:
    """Training-recipe dimensions of the backbone's ops (adder ALR eta, lp schedule, FDA terms)."""
    return [
        FloatRange("recipe.adder_eta", low=0.05, high=1.0, log=True, default=0.2, paper=ADDERNET,
                   help="adaptive learning-rate scale eta of adder layers"),
        Categorical("recipe.lp_schedule", (False, True), default=False, paper=ADDERNET_EXT,
                    help="train adder layers with p going from 2 to 1 (l2-to-l1)"),
        IntRange("recipe.fda_terms", low=2, high=24, default=18, paper=FDA,
                 help="upper index n of the Fourier-series sign gradient at the end of training (starts at n/2)"),
    ]


def addernet_resnet_space() -> SearchSpace:
    dims = backbone_dimensions()
    dims += recipe_dimensions()
    on = (Condition("manidp.enabled", (True,)),)
    dims += [
        Categorical("manidp.enabled", (False, True), default=False, paper=MANIDP,
                    help="instance-wise dynamic channel gates in every basic block"),
        FloatRange("manidp.target_remain_rate", low=0.3, high=0.9, default=0.65, paper=MANIDP, conditions=on,
                   help="fraction of channels kept on average at the end of training"),
        FloatRange("manidp.lambda_lasso", low=1e-3, high=0.2, log=True, default=0.1, paper=MANIDP, conditions=on,
                   help="weight of the complexity-weighted gate sparsity loss"),
        FloatRange("manidp.lambda_graph", low=0.0, high=2.0, default=0.1, paper=MANIDP, conditions=on,
                   help="weight of the Gram-similarity (manifold) alignment loss"),
        Categorical("manidp.remain_schedule", ("cosine", "linear", "step"), default="cosine", paper=MANIDP, conditions=on,
                    help="schedule of the remain rate from 1 to the target"),
    ]
    return SearchSpace(
        name="addernet-resnet",
        description="ResNet-20-style classifier: per-stage op (conv/adder/winograd_adder/binary), bits, width, blocks; ManiDP gates",
        dimensions=dims,
        builder="supernets.resnet:build_addernet_resnet",
        workloads_fn="spaces.addernet_resnet_workloads:addernet_resnet_workloads",
        presets={
            "resnet20-conv": {},
            "resnet20-adder": {f"stage{s}.op": "adder" for s in range(1, STAGES + 1)},
        },
    )


register_space("addernet-resnet")(addernet_resnet_space)
