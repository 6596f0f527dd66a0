"""TNT: exact parameter counts of TNT-S/B (timm's), shapes, any-size builds, workloads."""

from __future__ import annotations

import pytest
import torch

import spaces.tnt  # noqa: F401  (registers the tnt space until spaces/__init__ imports it)
from spaces import get_space
from supernets.build import build
from supernets.qlinear import QuantLinear
from supernets.tnt import TNT, TNTConfig, auto_patch_size, make_divisible

torch.set_num_threads(1)


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("preset, expected", [
    ("tnt_s", 23_768_584), ("tnt_b", 65_428_680),            # timm >= 1.0.16 tnt_{s,b}_patch16_224
    ("tnt_s_legacy", 23_755_336), ("tnt_b_legacy", 65_406_600),  # timm <= 1.0.15
])
def test_exact_parameter_counts_at_224(preset, expected):
    with torch.device("meta"):  # shapes only: counting needs no memory or init time
        model = build("tnt", get_space("tnt").preset(preset), num_classes=1000, image_size=224)
    assert _count(model) == expected


def test_tnt_s_breakdown_matches_spec():
    with torch.device("meta"):
        model = build("tnt", get_space("tnt").preset("tnt_s"), num_classes=1000, image_size=224)
    stem = sum(_count(getattr(model, n)) for n in ("pixel_embed", "norm1_proj", "proj", "norm2_proj"))
    stem += model.cls_token.numel() + model.patch_pos.numel() + model.pixel_pos.numel()
    assert stem == 229_344
    assert all(_count(b) == 1_929_456 for b in model.blocks)
    assert _count(model.head) == 385_000
    # the word -> patch projection of v2 blocks: LN(m c), Linear(m c -> D) without bias, LN(D)
    blk = model.blocks[0]
    assert blk.proj.bias is None and blk.norm1_proj.normalized_shape == (16 * 24,) and blk.norm2_proj is not None


def test_token_shapes_at_224():
    with torch.device("meta"):
        model = build("tnt", get_space("tnt").preset("tnt_s"), num_classes=1000, image_size=224)
        x = torch.empty(2, 3, 224, 224)
        words = model.pixel_embed(x, model.pixel_pos)
        assert words.shape == (2 * 196, 16, 24)
        assert model(x).shape == (2, 1000)
    assert model.pixel_embed.proj.kernel_size == (7, 7) and model.pixel_embed.proj.stride == (4, 4)
    assert model.patch_pos.shape == (1, 197, 384)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_default_arch_forward_on_small_images(shape):
    torch.manual_seed(0)
    model = build("tnt", get_space("tnt").default(), input_shape=shape, num_classes=10)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_input_spellings_agree_and_auto_sizes():
    sp = get_space("tnt")
    a = build("tnt", sp.default(), image_size=32, in_chans=3, num_classes=5)
    b = build("tnt", sp.default(), input_shape=(3, 32, 32), num_classes=5)
    assert a.cfg == b.cfg and a.cfg.patch_size == 4
    assert build("tnt", sp.default(), num_classes=10).cfg.img_size == (8, 8)  # digits by default
    assert (auto_patch_size(8, 8), auto_patch_size(32, 32), auto_patch_size(224, 224)) == (2, 4, 16)


def test_explicit_sizes_are_fitted_to_the_data():
    sp = get_space("tnt")
    m = build("tnt", sp.complete({"tnt.patch_size": 16, "tnt.inner_split": 8}), input_shape=(1, 8, 8), num_classes=10)
    assert m.cfg.patch_size == 8 and m.cfg.words_per_side == 8
    assert m(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_wrong_input_size_is_a_clear_error():
    m = build("tnt", get_space("tnt").default(), input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match="expected images of shape"):
        m(torch.randn(1, 1, 16, 16))


def test_legacy_and_v2_differ_in_word_embedding_but_both_run():
    torch.manual_seed(0)
    sp = get_space("tnt")
    for variant in ("v2", "legacy"):
        m = build("tnt", sp.complete({"tnt.variant": variant}), input_shape=(3, 16, 16), num_classes=3)
        assert m(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    v2 = TNT(TNTConfig(img_size=(16, 16), patch_size=8, words_per_side=2, embed_dim=16, inner_dim=4, depth=1,
                       outer_heads=2, inner_heads=2, num_classes=2))
    # per-patch word embedding: zero padding stays inside each patch, so a change in one patch
    # leaves every other patch's words untouched
    x = torch.randn(1, 3, 16, 16)
    y = x.clone()
    y[..., :8, :8] += 1.0
    w1, w2 = v2.pixel_embed(x, v2.pixel_pos), v2.pixel_embed(y, v2.pixel_pos)
    assert not torch.allclose(w1[0], w2[0]) and torch.equal(w1[1:], w2[1:])


def test_inner_blocks_pattern_and_vanilla_blocks():
    m = build("tnt", get_space("tnt").complete({"tnt.inner_blocks": "even"}), input_shape=(1, 8, 8), num_classes=10)
    assert [b.has_inner for b in m.blocks] == [True, False, True, False]
    assert not hasattr(m.blocks[1], "attn_in")
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_make_divisible_official_rule():
    assert make_divisible(384, 6) == 384 and make_divisible(640, 10) == 640
    assert make_divisible(64, 6) == 66 and make_divisible(48, 5) == 50


def test_space_samples_build_and_run():
    sp = get_space("tnt")
    for seed in range(4):
        arch = sp.sample(seed)
        with torch.device("meta"):
            m = build("tnt", arch, input_shape=(1, 8, 8), num_classes=10)
            assert m(torch.empty(2, 1, 8, 8)).shape == (2, 10)


def test_presets_use_domain_values():
    sp = get_space("tnt")
    s = sp.preset("tnt_s")
    assert (s["tnt.embed_dim"], s["tnt.outer_heads"], s["tnt.inner_dim"], s["tnt.inner_heads"], s["tnt.depth"]) == (384, 6, 24, 4, 12)
    b = sp.preset("tnt_b")
    assert (b["tnt.embed_dim"], b["tnt.outer_heads"], b["tnt.inner_dim"]) == (640, 10, 40)
    assert sp.validate(s) == s


def test_quantised_tnt_uses_quant_linears_and_reports_bits():
    from hw_cost.trace import trace_workloads

    torch.manual_seed(0)
    m = build("tnt", get_space("tnt").complete({"tnt.bits": 8}), input_shape=(1, 8, 8), num_classes=10)
    assert isinstance(m.blocks[0].mlp.fc1, QuantLinear) and isinstance(m.blocks[0].attn_out.qk, QuantLinear)
    assert torch.isfinite(m(torch.randn(2, 1, 8, 8))).all()
    wl, uncosted = trace_workloads(m, (1, 1, 8, 8))
    assert uncosted == []
    byname = {w["name"]: w for w in wl}
    assert byname["blocks.0.mlp.fc1"]["w_bits"] == 8 and byname["blocks.0.attn_out.qk_matmul"]["a_bits"] == 8


def test_attention_workloads_are_matmuls_softmax_and_linears():
    from hw_cost.trace import trace_workloads

    sp = get_space("tnt")
    m = build("tnt", sp.default(), input_shape=(1, 8, 8), num_classes=10)
    wl, uncosted = trace_workloads(m, (2, 1, 8, 8))
    assert uncosted == []
    byname = {w["name"]: w for w in wl}
    B, N, D = 2, 17, m.cfg.embed_dim              # 16 patches + class token
    assert byname["blocks.0.attn_out.qk_matmul"]["op"] == "matmul"
    assert byname["blocks.0.attn_out.qk_matmul"]["ops"] == B * N * N * D
    assert byname["blocks.0.attn_out.av_matmul"]["ops"] == B * N * N * D
    assert byname["blocks.0.attn_out.softmax"]["ops"] == B * m.cfg.outer_heads * N * N
    assert byname["blocks.0.attn_out.qk"]["ops"] == B * N * D * 2 * D
    assert byname["blocks.0.attn_out.proj"]["params"] == D * D + D
    Bw, Nw, c = B * 16, 4, m.cfg.inner_dim       # words: 4 per patch
    assert byname["blocks.0.attn_in.qk_matmul"]["ops"] == Bw * Nw * Nw * c
    ops = {w["op"] for w in wl}
    assert {"norm", "gelu", "linear", "conv", "matmul", "softmax"} <= ops
