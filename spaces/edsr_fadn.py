"""``edsr-fadn``: EDSR-style super-resolution networks with frequency-aware dynamic (FADN) blocks.

EDSR body (blocks, channels, scale, residual scaling, op family and bits of the body convs) and the
FADN dimensions of ``shared/techniques/vision-generative-detection.md`` section 4: branches and
their ops, target cost, sparsity and guide weights, Gumbel temperature, DCT mode and band
thresholds, mask granularity, dilation of the high-frequency mask. Builder:
``supernets.edsr:build_edsr_fadn``; the data's scale must equal ``edsr.scale``.
"""

from __future__ import annotations

from spaces.catalog import register_space
from spaces.dimensions import Categorical, Condition, FloatRange
from spaces.space import SearchSpace

EDSR = "EDSR (Lim et al., CVPR-W 2017, arXiv 1707.02921)"
FADN = "FADN (Xie et al., ICCV 2021, arXiv 2103.08357)"
FADN_UNOFFICIAL = f"{FADN}; unofficial songyonger/FADN"
FADN_INFERRED = f"{FADN}; value not published, our choice"
ADDERNET = "AdderNet (Chen et al., CVPR 2020, arXiv 1912.13200); AdderSR (Song et al., CVPR 2021, arXiv 2009.08891)"
ADDER_HW = "AdderNet hardware (Wang et al., arXiv 2101.10015)"

BRANCH_OPS = ("identity", "dwpw", "convpw", "resblock")
# per role, so the branches stay ordered cheap -> expensive (the DCT guide labels assume it)
LOW_OPS, MID_OPS, HIGH_OPS = ("identity", "dwpw", "convpw"), ("dwpw", "convpw"), ("convpw", "resblock")


def edsr_fadn_space() -> SearchSpace:
    on = Condition("fadn.enabled", (True,))
    dims = [
        Categorical("edsr.scale", (2, 3, 4), default=2, paper=EDSR, help="upscaling factor (must equal the data's scale)"),
        Categorical("edsr.blocks", (1, 2, 4, 6, 8, 12, 16, 32), default=4, paper=EDSR,
                    help="residual blocks in the body (EDSR baseline 16, EDSR 32)"),
        Categorical("edsr.channels", (8, 16, 24, 32, 48, 64, 128, 256), default=32, paper=EDSR,
                    help="feature channels (EDSR baseline 64, EDSR 256)"),
        Categorical("edsr.res_scale", (1.0, 0.1), default=1.0, paper=EDSR, help="residual scaling (baseline 1, EDSR 0.1)"),
        Categorical("edsr.op", ("conv", "adder"), default="conv", paper=ADDERNET,
                    help="op of every body conv (FADN branches included): multiplication or adder"),
        Categorical("edsr.bits", (32, 16, 8, 4), default=32, paper=ADDER_HW,
                    help="weight/activation bits of the body convs; 32 = float; adders share one scale"),
        Categorical("fadn.enabled", (False, True), default=False, paper=FADN,
                    help="frequency-aware dynamic blocks: a mask predictor routes each pixel to one branch"),
        Categorical("fadn.num_branches", (2, 3), default=3, paper=FADN, conditions=(on,),
                    help="2 = cheap/expensive, 3 = low/mid/high frequency"),
        Categorical("fadn.low_op", LOW_OPS, default="dwpw", paper=FADN_UNOFFICIAL, conditions=(on,),
                    help="op of the low-frequency (cheapest) branch; dwpw = dw3x3+1x1 (0.063 of a resblock at C=64)"),
        Categorical("fadn.mid_op", MID_OPS, default="convpw", paper=FADN_UNOFFICIAL,
                    conditions=(on, Condition("fadn.num_branches", (3,))),
                    help="op of the mid-frequency branch; convpw = 3x3+1x1 (0.556 of a resblock)"),
        Categorical("fadn.high_op", HIGH_OPS, default="resblock", paper=FADN_UNOFFICIAL, conditions=(on,),
                    help="op of the high-frequency branch; resblock = the plain EDSR block (1.0)"),
        FloatRange("fadn.target_cost", low=0.3, high=0.7, default=0.5, paper=FADN, conditions=(on,),
                   help="target mean cost ratio of the dynamic blocks (MACs vs plain resblocks; paper ~0.5)"),
        FloatRange("fadn.lambda_sparse", low=1e-3, high=1.0, log=True, default=0.1, paper=FADN_UNOFFICIAL, conditions=(on,),
                   help="weight of (mean cost ratio - target)^2"),
        FloatRange("fadn.lambda_guide", low=0.0, high=1.0, default=0.1, paper=FADN_INFERRED, conditions=(on,),
                   help="weight of the cross-entropy to the hand-crafted DCT masks"),
        Categorical("fadn.guide_schedule", ("constant", "linear", "warmup"), default="linear", paper=FADN_INFERRED,
                    conditions=(on,), help="guide weight over training: constant, linear to 0, first 30% only"),
        FloatRange("fadn.gumbel_tau", low=0.5, high=2.0, default=1.0, paper=FADN_UNOFFICIAL, conditions=(on,),
                   help="Gumbel-softmax temperature of the mask predictor"),
        Categorical("fadn.dct_mode", ("global", "block8"), default="global", paper=FADN_INFERRED, conditions=(on,),
                    help="DCT of the whole LR input or of 8x8 blocks (JPEG-style)"),
        FloatRange("fadn.band_low", low=0.05, high=0.3, default=0.15, paper=FADN_INFERRED, conditions=(on,),
                   help="normalised DCT radius ending the low band (the split of 2-branch masks)"),
        FloatRange("fadn.band_high", low=0.35, high=0.7, default=0.5, paper=FADN_INFERRED, conditions=(on,),
                   help="normalised DCT radius starting the high band"),
        Categorical("fadn.mask_granularity", (1, 2, 4), default=1, paper=FADN_INFERRED, conditions=(on,),
                    help="mask cell side in pixels (the predictor runs on pooled features)"),
        Categorical("fadn.dilate_high", (True, False), default=True, paper=FADN, conditions=(on,),
                    help="run the first conv of resblock branches on the 3x3-dilated mask (valid neighbours for the second)"),
    ]
    return SearchSpace(
        name="edsr-fadn",
        description="EDSR super-resolution: blocks, channels, scale, body op/bits; FADN frequency-aware dynamic branches",
        dimensions=dims,
        builder="supernets.edsr:build_edsr_fadn",
        workloads_fn="spaces.edsr_fadn_workloads:edsr_fadn_workloads",
        presets={
            "edsr-baseline": {"edsr.blocks": 16, "edsr.channels": 64},
            "fadn-edsr-baseline": {"edsr.blocks": 16, "edsr.channels": 64, "fadn.enabled": True},
        },
    )


register_space("edsr-fadn")(edsr_fadn_space)
