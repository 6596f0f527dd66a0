"""``detector``: a small one-stage FPN detector with a searchable ResNet backbone and DeFeat distillation.

Backbone: the ``addernet-resnet`` stages (per-stage op conv/adder/winograd_adder/binary, bits,
width, blocks; the same dimensions, defined once in ``spaces.addernet_resnet``) behind a stride-2
conv stem, so the stages run at strides 2, 4, 8. Neck: an FPN on the stride-4 and stride-8
stages plus one stride-2 conv on top (levels P3, P4, P5 at strides 4, 8, 16). Head: a dense
(FCOS-like, anchor-free) head shared across levels with a softmax over K + 1 classes (the last
one is background) and ltrb box distances. The builder is ``supernets.detector:build_detector``.

Why one-stage with a softmax head: DeFeat's head loss is a KL divergence between tempered
softmaxes over K + 1 classes, split into positive and negative proposals. A dense softmax head
has exactly that: every location is a proposal, positives are the locations assigned to a
ground-truth box, negatives the rest; teacher and student share the location grid, so the split
comes from one assignment (the release's ``SampleSTU`` semantics, with no separate RoI sampling)
and no RoIAlign is needed (torchvision does not install beside our torch).

``defeat.*`` are training-recipe dimensions read by ``evaluators.detection``: ``method`` chooses
no distillation, plain FitNet (neck loss with an all-ones mask, no head term) or DeFeat (decoupled
object/background neck loss and positive/negative head loss). Ranges and defaults follow the
released VOC config (alpha_obj 3, alpha_bg 12, beta 2/2, T 1/1), see
``techniques/vision-generative-detection.md`` section 3.
"""

from __future__ import annotations

from spaces.addernet_resnet import backbone_dimensions, recipe_dimensions
from spaces.catalog import register_space
from spaces.dimensions import Categorical, Condition, FloatRange, IntRange
from spaces.space import SearchSpace

DEFEAT = "DeFeat (Guo et al., CVPR 2021, arXiv 2103.14475)"
FITNET = "FitNets (Romero et al., ICLR 2015, arXiv 1412.6550)"
FPN = "FPN (Lin et al., CVPR 2017, arXiv 1612.03144)"
FGFI = "FGFI (Wang et al., CVPR 2019, arXiv 1906.03609)"
FCOS = "FCOS (Tian et al., ICCV 2019, arXiv 1904.01355)"


def detector_space() -> SearchSpace:
    dims = backbone_dimensions() + recipe_dimensions()
    dims += [
        Categorical("fpn.channels", (16, 32, 48, 64), default=32, paper=FPN, help="channels of every FPN level"),
        IntRange("head.convs", low=1, high=3, default=2, paper=FCOS, help="conv3x3-GN-ReLU layers of the shared head tower"),
        Categorical("head.bits", (32, 16, 8), default=32, paper=FPN,
                    help="bits of the FPN and head convs (32 = float; below: quantised conv)"),
    ]
    kd = (Condition("defeat.method", ("fitnet", "defeat")),)
    de = (Condition("defeat.method", ("defeat",)),)
    head = de + (Condition("defeat.use_head", (True,)),)
    neck = de + (Condition("defeat.use_neck", (True,)),)
    dims += [
        Categorical("defeat.method", ("none", "fitnet", "defeat"), default="none", paper=f"{DEFEAT}; {FITNET}",
                    help="distillation from the teacher: none, FitNet (all-ones neck mask) or DeFeat (decoupled)"),
        Categorical("defeat.adapter", ("conv3x3", "conv1x1", "identity"), default="conv3x3", paper=DEFEAT, conditions=kd,
                    help="per-level adaptation layer on the student's FPN features (release: conv3x3, init N(0,1).fmod(2)*1e-4)"),
        Categorical("defeat.kd_schedule", ("constant", "linear_decay", "cosine_decay"), default="constant", paper=DEFEAT,
                    conditions=kd, help="per-epoch multiplier of every distillation term (release config: constant)"),
        FloatRange("defeat.alpha_obj", low=0.5, high=8.0, default=3.0, paper=DEFEAT, conditions=kd,
                   help="weight of the neck loss on object cells (FitNet: of the whole neck loss)"),
        Categorical("defeat.use_neck", (True, False), default=True, paper=DEFEAT, conditions=de,
                    help="decoupled neck-feature loss on"),
        FloatRange("defeat.alpha_bg", low=1.0, high=24.0, default=12.0, paper=DEFEAT, conditions=neck,
                   help="weight of the neck loss on background cells"),
        Categorical("defeat.mask", ("gt_per_level", "gt_all_levels", "fgfi_roi"), default="gt_per_level", paper=f"{DEFEAT}; {FGFI}",
                    conditions=neck, help="object cells: each GT box on its own FPN level (release), on every level, or FGFI's "
                    "region (locations with a prior of IoU > psi x the box's best prior IoU)"),
        FloatRange("defeat.fgfi_psi", low=0.3, high=0.8, default=0.5, paper=FGFI, conditions=neck + (Condition("defeat.mask", ("fgfi_roi",)),),
                   help="FGFI's threshold factor psi on the best prior IoU (paper: 0.5)"),
        Categorical("defeat.use_head", (True, False), default=True, paper=DEFEAT, conditions=de,
                    help="decoupled head KL on positive/negative locations (paper; the shipped VOC config has it off)"),
        FloatRange("defeat.beta_obj", low=0.0, high=4.0, default=2.0, paper=DEFEAT, conditions=head,
                   help="weight of the head KL on positive locations"),
        FloatRange("defeat.beta_bg", low=0.0, high=4.0, default=2.0, paper=DEFEAT, conditions=head,
                   help="weight of the head KL on negative (background) locations"),
        FloatRange("defeat.T_obj", low=1.0, high=4.0, default=1.0, paper=DEFEAT, conditions=head,
                   help="softmax temperature of the positive-location KL"),
        FloatRange("defeat.T_bg", low=1.0, high=4.0, default=1.0, paper=DEFEAT, conditions=head,
                   help="softmax temperature of the negative-location KL (the release ignores it and uses T_obj)"),
    ]
    small = {"stage1.width": 0.5, "stage2.width": 0.5, "stage3.width": 0.5, "stage1.blocks": 1, "stage2.blocks": 1,
             "stage3.blocks": 1, "fpn.channels": 32, "head.convs": 1}
    return SearchSpace(
        name="detector",
        description="one-stage FPN detector (dense softmax head); ResNet backbone with per-stage op/bits/width/blocks; DeFeat distillation",
        dimensions=dims,
        builder="supernets.detector:build_detector",
        workloads_fn="spaces.detector_workloads:detector_workloads",
        presets={
            "teacher": {"stage1.blocks": 2, "stage2.blocks": 2, "stage3.blocks": 2, "fpn.channels": 64, "head.convs": 2},
            "student": dict(small),
            "student-defeat": {**small, "defeat.method": "defeat"},
            "student-adder8-defeat": {**small, "stage1.op": "adder", "stage2.op": "adder", "stage3.op": "adder",
                                      "stage1.bits": 8, "stage2.bits": 8, "stage3.bits": 8, "defeat.method": "defeat"},
        },
    )


register_space("detector")(detector_space)
