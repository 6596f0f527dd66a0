"""``tnt``: Transformer-in-Transformer classifiers, with ViT pruning (VTP) and bit width as dimensions.

The defaults describe a small TNT for 8x8 digits; the builder (``supernets.tnt:build_tnt``) sizes
patches to the data (``tnt.patch_size="auto"``: 2 px below 32 px, 4 px from 32 px, 16 px from
128 px), so the same architecture runs on digits, 32x32 and 224x224 images. Presets ``tnt_s`` and
``tnt_b`` are the paper's TNT-S / TNT-B (v2, official; at 224 px they equal timm's
``tnt_s_patch16_224`` / ``tnt_b_patch16_224`` parameter for parameter).
"""

from __future__ import annotations

from spaces.catalog import register_space
from spaces.dimensions import Categorical, Condition, FloatRange
from spaces.space import SearchSpace

TNT_PAPER = "TNT (Han et al., NeurIPS 2021, arXiv 2103.00112)"
VTP_PAPER = "Vision Transformer Pruning (Zhu, Tang, Han, arXiv 2104.08500)"
VTP_UNOFFICIAL = f"{VTP_PAPER}; unofficial Cydia2018/ViT-cifar10-pruning"
QUANT = "uniform symmetric fake quantisation (as AdderNet hardware, arXiv 2101.10015)"

DEPTHS = (1, 2, 3, 4, 6, 8, 10, 12, 14, 16)
MAX_DEPTH = max(DEPTHS)


def tnt_space() -> SearchSpace:
    vtp_on = Condition("vtp.enabled", (True,))
    dims = [
        Categorical("tnt.variant", ("v2", "legacy"), default="v2", paper=TNT_PAPER,
                    help="v2 = official (timm >= 1.0.16); legacy = first timm port (per-image word conv, biased projection)"),
        Categorical("tnt.depth", DEPTHS, default=4, paper=TNT_PAPER, help="number of TNT blocks (S/B: 12)"),
        Categorical("tnt.embed_dim", (32, 48, 64, 96, 128, 192, 256, 320, 384, 512, 640, 768), default=64, paper=TNT_PAPER,
                    help="outer (patch) dim D; rounded to a multiple of outer_heads (S: 384, B: 640)"),
        Categorical("tnt.outer_heads", (1, 2, 3, 4, 5, 6, 8, 10, 12), default=4, paper=TNT_PAPER,
                    help="heads of the outer attention (S: 6, B: 10)"),
        Categorical("tnt.inner_dim", (4, 8, 12, 16, 24, 32, 40, 48), default=16, paper=TNT_PAPER,
                    help="inner (word) dim c; rounded to a multiple of inner_heads (S: 24, B: 40)"),
        Categorical("tnt.inner_heads", (1, 2, 4, 6), default=2, paper=TNT_PAPER, help="heads of the inner attention (S/B: 4)"),
        Categorical("tnt.mlp_ratio", (1, 2, 3, 4), default=2, paper=TNT_PAPER, help="outer MLP hidden = ratio x D (S/B: 4)"),
        Categorical("tnt.inner_mlp_ratio", (1, 2, 4), default=4, paper=TNT_PAPER,
                    help="inner MLP hidden = ratio x c (hard-coded 4 in the reference)"),
        Categorical("tnt.patch_size", ("auto", 1, 2, 4, 8, 16, 32), default="auto", paper=TNT_PAPER,
                    help="patch side in pixels; auto = 2 below 32 px, 4 from 32 px, 16 from 128 px"),
        Categorical("tnt.inner_split", ("auto", 1, 2, 4, 8), default="auto", paper=TNT_PAPER,
                    help="words per patch side (m = split^2 words); auto = 4 for 16/8 px patches, 2 for 4/2 px"),
        Categorical("tnt.inner_blocks", ("all", "even", "first_half", "none"), default="all", paper=TNT_PAPER,
                    help="blocks that keep the inner transformer (official vanilla_idxs); none = a plain ViT"),
        FloatRange("tnt.drop_path_rate", low=0.0, high=0.3, default=0.0, paper=TNT_PAPER,
                   help="stochastic depth, linear 0 -> rate over the blocks (reference 0.1)"),
        Categorical("tnt.bits", (32, 16, 8, 4), default=32, paper=QUANT,
                    help="bits of every linear layer in the blocks and of the attention matmul operands; 32 = float"),
        Categorical("vtp.enabled", (False, True), default=False, paper=VTP_PAPER,
                    help="train with VTP gates + L1, prune, fine-tune"),
        FloatRange("vtp.lambda", low=1e-5, high=1e-3, log=True, default=1e-4, paper=VTP_UNOFFICIAL,
                   help="L1 weight on the gate scores", conditions=(vtp_on,)),
        FloatRange("vtp.prune_rate", low=0.0, high=0.6, default=0.3, paper=VTP_UNOFFICIAL,
                   help="fraction of gated dimensions removed (paper points 0.2, 0.4)", conditions=(vtp_on,)),
        Categorical("vtp.placement", ("qkv_out+mlp_hidden", "qkv_out_only", "mlp_hidden_only"), default="qkv_out+mlp_hidden",
                    paper=VTP_UNOFFICIAL, help="where gates sit: shared Q/K/V-output gate and/or MLP-hidden gate",
                    conditions=(vtp_on,)),
        Categorical("vtp.gate_inner", (False, True), default=False, paper=VTP_PAPER,
                    help="also gate the inner (word) transformer of TNT blocks", conditions=(vtp_on,)),
        Categorical("vtp.threshold_scope", ("global", "per_layer", "per_block"), default="global", paper=VTP_UNOFFICIAL,
                    help="one global threshold (paper), one rate per layer, or a keep ratio per block", conditions=(vtp_on,)),
    ]
    for i in range(MAX_DEPTH):
        dims.append(FloatRange(
            f"vtp.block{i}.keep_ratio", low=0.3, high=1.0, default=0.7, paper=VTP_PAPER,
            help=f"fraction of block {i}'s gated dimensions kept",
            conditions=(vtp_on, Condition("vtp.threshold_scope", ("per_block",)), Condition("tnt.depth", tuple(d for d in DEPTHS if d > i))),
        ))
    dims += [
        Categorical("vtp.head_rounding", ("multiple", "uniform", "none"), default="multiple", paper=VTP_UNOFFICIAL,
                    help="kept attention dims: a multiple of the heads (unofficial), equal per head, or free",
                    conditions=(vtp_on,)),
        Categorical("vtp.l1_mode", ("subgradient", "loss"), default="subgradient", paper=VTP_UNOFFICIAL,
                    help="L1 as lambda*sign(a) added to the gradient (unofficial) or as a loss term", conditions=(vtp_on,)),
        FloatRange("vtp.sparse_fraction", low=0.2, high=0.8, default=0.5, paper=VTP_PAPER,
                   help="share of the epochs spent in sparsity training; the rest fine-tunes the pruned model",
                   conditions=(vtp_on,)),
    ]
    common = {"tnt.depth": 12, "tnt.mlp_ratio": 4, "tnt.inner_mlp_ratio": 4, "tnt.inner_heads": 4, "tnt.drop_path_rate": 0.1}
    return SearchSpace(
        name="tnt",
        description="Transformer in Transformer: depth, outer/inner dims and heads, MLP ratios, patch/word split, "
                    "bits, and ViT pruning (VTP)",
        dimensions=dims,
        builder="supernets.tnt:build_tnt",
        workloads_fn="spaces.tnt_workloads:tnt_workloads",
        presets={
            "tnt_s": {**common, "tnt.embed_dim": 384, "tnt.outer_heads": 6, "tnt.inner_dim": 24},
            "tnt_b": {**common, "tnt.embed_dim": 640, "tnt.outer_heads": 10, "tnt.inner_dim": 40},
            "tnt_s_legacy": {**common, "tnt.variant": "legacy", "tnt.embed_dim": 384, "tnt.outer_heads": 6, "tnt.inner_dim": 24},
            "tnt_b_legacy": {**common, "tnt.variant": "legacy", "tnt.embed_dim": 640, "tnt.outer_heads": 10, "tnt.inner_dim": 40},
        },
    )


register_space("tnt")(tnt_space)
