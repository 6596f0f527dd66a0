"""Transformer in Transformer (TNT; Han et al., NeurIPS 2021, arXiv 2103.00112) for any configuration.

Two levels of tokens: each image patch (``patch_size`` pixels square) is split into
``words_per_side**2`` *words* of width ``inner_dim`` (c) and the patches are tokens of width
``embed_dim`` (D). Every block runs an inner transformer on the words of each patch, adds a
projection of the patch's words to the patch token (the pixel-to-patch projection), then runs an
outer transformer on the patch tokens (plus a class token).

Two versions, with different exact parameter counts (spec ``vision-generative-detection.md`` sec. 6):

* ``variant="v2"`` (official ``huawei-noah/Efficient-AI-Backbones`` and timm >= 1.0.16): words are
  embedded *per patch* (unfold the image into patches, then Conv2d(C -> c, 7, stride 4, pad 3) on
  each patch); the in-block projection is LN(m c) -> Linear(m c -> D, no bias) -> LN(D).
* ``variant="legacy"`` (timm <= 1.0.15): one conv over the whole image, unfolded into word windows;
  the in-block projection is LN(c) per word -> Linear(m c -> D, bias), no output LN.

Both: a stem projection LN(m c) -> Linear(m c -> D, bias) -> LN(D), a class token, a learned patch
position embedding ((N+1) x D) and a word position embedding (c x m) shared by all patches;
attention with separate ``qk`` (D -> 2D) and ``v`` linears without bias, output projection with
bias, scale head_dim^-0.5; GELU MLPs, the inner one of width ``inner_mlp_ratio * c`` (4c, hard-coded
in the reference). The official frozen, unused ``outer_tokens`` parameter is *not* created: the
paper's 23.8M / 65.6M count includes it, timm's 23,768,584 / 65,428,680 (which ours equal) do not.

Generalisation beyond 224 px (our choice, [inferred]): the word-embedding conv has stride
``s = patch_size // words_per_side``, kernel ``2s - 1`` and padding ``s - 1`` -- this is exactly
(7, 4, 3) for the reference s = 4 and keeps ``words_per_side`` words per patch for any s.

Hardware workloads: attention layers describe themselves (``hw_workload``): the ``qk``/``v``/``proj``
linears, Q K^T and A V as activation x activation ``matmul`` ops, the softmax, and the VTP gate
multiplications. LayerNorm, GELU, convs and linears are standard layers costed by the tracer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernets.qlinear import fake_quant, linear_bits, linear_workload, make_linear
from supernets.vtp import ChannelGate, VTPConfig

__all__ = ["TNT", "TNTConfig", "TNTBlock", "Attention", "Mlp", "PixelEmbed", "DropPath", "build_tnt",
           "make_divisible", "auto_patch_size", "auto_words_per_side"]


def make_divisible(v: float, divisor: int) -> int:
    """Nearest multiple of ``divisor`` that is at least 90% of ``v`` (the official TNT builder's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def auto_patch_size(height: int, width: int) -> int:
    """Patch side for ``patch_size="auto"``: 16 from 128 px (the reference's 224 px), 4 from 32 px
    (CIFAR-style ViTs), else 2 (8x8 digits: 4x4 patches). [inferred; a space default, not the paper]"""
    side = min(int(height), int(width))
    return 16 if side >= 128 else 4 if side >= 32 else 2


def auto_words_per_side(patch_size: int) -> int:
    """Words per patch side for ``inner_split="auto"``: 4 for 16 px patches (the reference's 4x4
    words), 4 for 8, 2 for 4 and 2, 1 for 1."""
    return {16: 4, 8: 4, 4: 2, 2: 2, 1: 1}.get(int(patch_size), min(4, int(patch_size)))


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016): identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"drop_path rate must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        return {"op": "identity", "ops": 0}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention with TNT's ``qk`` + ``v`` projections, optionally VTP-gated.

    ``head_dims`` (per-head widths) is the full ``dim // num_heads`` for every head unless the layer
    was pruned by VTP; ``scale`` stays the original ``(dim // num_heads)^-0.5`` after pruning so the
    slim layer computes exactly what the gated layer computed. At ``bits < 32`` the linears are
    fake-quantised and so are Q, K, V and the attention probabilities (operands of the two
    activation x activation matmuls, with dynamic per-tensor scales).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        bits: int = 32,
        gated: bool = False,
        head_dims: Sequence[int] | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_heads < 1 or (head_dims is None and dim % num_heads):
            raise ValueError(f"attention: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.bits, self.qkv_bias = int(dim), int(num_heads), int(bits), bool(qkv_bias)
        self.head_dims = tuple(int(h) for h in (head_dims if head_dims is not None else (dim // num_heads,) * num_heads))
        if len(self.head_dims) != self.num_heads:
            raise ValueError(f"attention: head_dims must have num_heads={num_heads} entries, got {self.head_dims}")
        self.scale = float(scale) if scale is not None else (dim // num_heads) ** -0.5
        inner = sum(self.head_dims)
        self.inner_dim = inner
        self.qk = make_linear(dim, 2 * inner, qkv_bias, bits)
        self.v = make_linear(dim, inner, qkv_bias, bits)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = make_linear(inner, dim, True, bits)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gate: ChannelGate | None = ChannelGate(inner) if gated else None

    def head_groups(self) -> list[torch.Tensor]:
        """Gate indices of each head (contiguous, head after head)."""
        out, start = [], 0
        for h in self.head_dims:
            out.append(torch.arange(start, start + h))
            start += h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        inner = self.inner_dim
        q, k = self.qk(x).split(inner, dim=-1)
        v = self.v(x)
        if self.gate is not None:
            q, k, v = self.gate(q), self.gate(k), self.gate(v)
        q, k, v = fake_quant(q, self.bits), fake_quant(k, self.bits), fake_quant(v, self.bits)
        uniform = len(set(self.head_dims)) == 1
        if uniform and inner > 0:
            H, dh = self.num_heads, self.head_dims[0]
            q = q.reshape(B, N, H, dh).transpose(1, 2)
            k = k.reshape(B, N, H, dh).transpose(1, 2)
            v = v.reshape(B, N, H, dh).transpose(1, 2)
            attn = self.attn_drop(fake_quant((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1), self.bits))
            out = (attn @ v).transpose(1, 2).reshape(B, N, inner)
        else:
            outs = []
            for qh, kh, vh in zip(q.split(self.head_dims, -1), k.split(self.head_dims, -1), v.split(self.head_dims, -1)):
                if qh.shape[-1] == 0:
                    continue  # a fully pruned head contributes nothing (its V columns are gone too)
                attn = self.attn_drop(fake_quant((qh @ kh.transpose(-2, -1) * self.scale).softmax(dim=-1), self.bits))
                outs.append(attn @ vh)
            out = torch.cat(outs, dim=-1) if outs else x.new_zeros(B, N, 0)
        return self.proj_drop(self.proj(out))

    @torch.no_grad()
    def pruned(self, keep: torch.Tensor) -> "Attention":
        """Slim copy keeping gate dimensions ``keep``; the kept scores a are folded into the rows
        of W_q, W_k (q.k scales by a^2: a on each side) and W_v (and their biases, if any)."""
        if self.gate is None:
            raise ValueError("attention layer has no VTP gate to prune")
        keep = torch.sort(keep.long()).values
        a = self.gate.score.detach()[keep]
        bounds = torch.tensor([0, *torch.tensor(self.head_dims).cumsum(0).tolist()])
        head_of = torch.bucketize(keep.cpu(), bounds[1:], right=True)
        new_dims = [int((head_of == h).sum()) for h in range(self.num_heads)]
        slim = Attention(self.dim, self.num_heads, self.qkv_bias, self.attn_drop.p, self.proj_drop.p, self.bits,
                         gated=False, head_dims=new_dims, scale=self.scale).to(self.proj.weight.device, self.proj.weight.dtype)
        inner = self.inner_dim
        rows = torch.cat([keep, keep + inner])
        a2 = torch.cat([a, a])
        slim.qk.weight.copy_(self.qk.weight[rows] * a2[:, None])
        slim.v.weight.copy_(self.v.weight[keep] * a[:, None])
        if self.qkv_bias:
            slim.qk.bias.copy_(self.qk.bias[rows] * a2)
            slim.v.bias.copy_(self.v.bias[keep] * a)
        slim.proj.weight.copy_(self.proj.weight[:, keep])
        slim.proj.bias.copy_(self.proj.bias)
        return slim

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[dict]:
        B, N = int(input_shape[0]), int(input_shape[1])
        rows, inner, dim = B * N, self.inner_dim, self.dim
        wb = linear_bits(self.qk)
        heads = [h for h in self.head_dims if h > 0]
        Hn = len(heads)
        ab = self.bits
        wls = [
            linear_workload(rows, dim, 2 * inner, self.qkv_bias, wb, wb, name="qk"),
            linear_workload(rows, dim, inner, self.qkv_bias, wb, wb, name="v"),
        ]
        if self.gate is not None:
            wls.append({"name": "gate", "op": "eltwise", "ops": 3 * rows * inner, "w_bits": 32, "a_bits": 32,
                        "params": inner, "in_elems": 3 * rows * inner, "out_elems": 3 * rows * inner})
        if Hn:
            wls += [
                {"name": "qk_matmul", "op": "matmul", "ops": B * N * N * inner, "w_bits": ab, "a_bits": ab,
                 "in_elems": 2 * rows * inner, "out_elems": B * Hn * N * N, "in_channels": max(heads),
                 "out_channels": N, "kernel": 1, "out_pixels": B * Hn * N},
                {"name": "softmax", "op": "softmax", "ops": B * Hn * N * N, "w_bits": 32, "a_bits": 32,
                 "in_elems": B * Hn * N * N, "out_elems": B * Hn * N * N},
                {"name": "av_matmul", "op": "matmul", "ops": B * N * N * inner, "w_bits": ab, "a_bits": ab,
                 "in_elems": B * Hn * N * N + rows * inner, "out_elems": rows * inner, "in_channels": N,
                 "out_channels": max(heads), "kernel": 1, "out_pixels": B * Hn * N},
            ]
        wls.append(linear_workload(rows, inner, dim, True, wb, wb, name="proj"))
        return wls

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.num_heads}, head_dims={self.head_dims}, bits={self.bits}, gated={self.gate is not None}"


class Mlp(nn.Module):
    """fc1 -> GELU -> (VTP gate) -> fc2, with dropout after the activation and after fc2."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0, bits: int = 32, gated: bool = False) -> None:
        super().__init__()
        self.in_features, self.hidden_features, self.bits = int(in_features), int(hidden_features), int(bits)
        self.fc1 = make_linear(in_features, hidden_features, True, bits)
        self.act = nn.GELU()
        self.gate: ChannelGate | None = ChannelGate(hidden_features) if gated and hidden_features > 0 else None
        self.drop1 = nn.Dropout(drop)
        self.fc2 = make_linear(hidden_features, in_features, True, bits)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if self.gate is not None:
            h = self.gate(h)
        return self.drop2(self.fc2(self.drop1(h)))

    @torch.no_grad()
    def pruned(self, keep: torch.Tensor) -> "Mlp":
        """Slim copy keeping hidden units ``keep``; the kept scores are folded into fc2's columns."""
        if self.gate is None:
            raise ValueError("MLP has no VTP gate to prune")
        keep = torch.sort(keep.long()).values
        a = self.gate.score.detach()[keep]
        slim = Mlp(self.in_features, int(keep.numel()), self.drop1.p, self.bits, gated=False).to(self.fc1.weight.device, self.fc1.weight.dtype)
        slim.fc1.weight.copy_(self.fc1.weight[keep])
        slim.fc1.bias.copy_(self.fc1.bias[keep])
        slim.fc2.weight.copy_(self.fc2.weight[:, keep] * a[None, :])
        slim.fc2.bias.copy_(self.fc2.bias)
        return slim


class PixelEmbed(nn.Module):
    """Image -> words: ``(B*N, m, c)`` word tokens (N patches of m = words_per_side**2 words)."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, inner_dim: int, words_per_side: int, legacy: bool = False) -> None:
        super().__init__()
        H, W = img_size
        p = int(patch_size)
        if H % p or W % p:
            raise ValueError(f"patch_size: expected a divisor of the image size {H}x{W}, found {p}")
        if words_per_side < 1 or p % words_per_side:
            raise ValueError(f"inner split: expected words per patch side dividing patch_size={p}, found {words_per_side}")
        self.img_size, self.patch_size, self.in_chans, self.inner_dim, self.legacy = (H, W), p, in_chans, inner_dim, legacy
        self.grid = (H // p, W // p)
        self.num_patches = self.grid[0] * self.grid[1]
        self.words_per_side = int(words_per_side)
        self.num_words = self.words_per_side ** 2
        s = p // self.words_per_side
        self.proj = nn.Conv2d(in_chans, inner_dim, kernel_size=2 * s - 1, stride=s, padding=s - 1)

    def forward(self, x: torch.Tensor, pixel_pos: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if (H, W) != self.img_size or C != self.in_chans:
            raise ValueError(f"input: expected images of shape ({self.in_chans}, {self.img_size[0]}, {self.img_size[1]}), found {tuple(x.shape[1:])}")
        p, m, c, N = self.patch_size, self.words_per_side, self.inner_dim, self.num_patches
        if self.legacy:
            y = F.unfold(self.proj(x), kernel_size=m, stride=m)            # (B, c*m*m, N)
            y = y.transpose(1, 2).reshape(B * N, c, m, m)
        else:
            y = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2).reshape(B * N, C, p, p)
            y = self.proj(y)                                                # (B*N, c, m, m)
        y = y + pixel_pos
        return y.reshape(B * N, c, m * m).transpose(1, 2)


class TNTBlock(nn.Module):
    """Inner transformer on words, word -> patch projection, outer transformer on patches."""

    def __init__(self, inner_dim: int, embed_dim: int, num_words: int, inner_heads: int, outer_heads: int, mlp_ratio: float,
                 inner_mlp_ratio: float = 4.0, qkv_bias: bool = False, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, legacy: bool = False, has_inner: bool = True, bits: int = 32,
                 gate_attention: bool = False, gate_mlp: bool = False, gate_inner: bool = False) -> None:
        super().__init__()
        self.has_inner, self.legacy = bool(has_inner), bool(legacy)
        if self.has_inner:
            gi_a, gi_m = gate_attention and gate_inner, gate_mlp and gate_inner
            self.norm_in = nn.LayerNorm(inner_dim)
            self.attn_in = Attention(inner_dim, inner_heads, qkv_bias, attn_drop, drop, bits, gated=gi_a)
            self.norm_mlp_in = nn.LayerNorm(inner_dim)
            self.mlp_in = Mlp(inner_dim, int(inner_dim * inner_mlp_ratio), drop, bits, gated=gi_m)
            if self.legacy:
                self.norm1_proj = nn.LayerNorm(inner_dim)
                self.proj = make_linear(inner_dim * num_words, embed_dim, True, bits)
                self.norm2_proj = None
            else:
                self.norm1_proj = nn.LayerNorm(inner_dim * num_words)
                self.proj = make_linear(inner_dim * num_words, embed_dim, False, bits)
                self.norm2_proj = nn.LayerNorm(embed_dim)
        self.norm_out = nn.LayerNorm(embed_dim)
        self.attn_out = Attention(embed_dim, outer_heads, qkv_bias, attn_drop, drop, bits, gated=gate_attention)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm_mlp = nn.LayerNorm(embed_dim)
        self.mlp = Mlp(embed_dim, int(embed_dim * mlp_ratio), drop, bits, gated=gate_mlp)

    def forward(self, words: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.has_inner:
            words = words + self.drop_path(self.attn_in(self.norm_in(words)))
            words = words + self.drop_path(self.mlp_in(self.norm_mlp_in(words)))
            B, N1, _ = patches.shape
            if self.norm2_proj is None:
                add = self.proj(self.norm1_proj(words).reshape(B, N1 - 1, -1))
            else:
                add = self.norm2_proj(self.proj(self.norm1_proj(words.reshape(B, N1 - 1, -1))))
            patches = torch.cat([patches[:, :1], patches[:, 1:] + add], dim=1)
        patches = patches + self.drop_path(self.attn_out(self.norm_out(patches)))
        patches = patches + self.drop_path(self.mlp(self.norm_mlp(patches)))
        return words, patches


@dataclass(frozen=True)
class TNTConfig:
    """Every architectural knob of TNT. ``inner_blocks``: which blocks keep the inner transformer
    (the official ``vanilla_idxs`` complement); ``None`` = all."""

    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    patch_size: int = 16
    words_per_side: int = 4
    embed_dim: int = 384
    inner_dim: int = 24
    depth: int = 12
    outer_heads: int = 6
    inner_heads: int = 4
    mlp_ratio: float = 4.0
    inner_mlp_ratio: float = 4.0
    qkv_bias: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    legacy: bool = False
    inner_blocks: tuple[bool, ...] | None = None
    bits: int = 32
    gate_attention: bool = False
    gate_mlp: bool = False
    gate_inner: bool = False


class TNT(nn.Module):
    """Transformer in Transformer classifier (class-token head)."""

    def __init__(self, cfg: TNTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.inner_blocks is not None and len(cfg.inner_blocks) != cfg.depth:
            raise ValueError(f"inner_blocks: expected {cfg.depth} flags (one per block), found {len(cfg.inner_blocks)}")
        self.pixel_embed = PixelEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.inner_dim, cfg.words_per_side, cfg.legacy)
        N, m, c, D = self.pixel_embed.num_patches, self.pixel_embed.num_words, cfg.inner_dim, cfg.embed_dim
        self.num_patches, self.num_words = N, m
        self.norm1_proj = nn.LayerNorm(m * c)
        self.proj = nn.Linear(m * c, D)
        self.norm2_proj = nn.LayerNorm(D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.patch_pos = nn.Parameter(torch.zeros(1, N + 1, D))
        ws = self.pixel_embed.words_per_side
        self.pixel_pos = nn.Parameter(torch.zeros(1, c, ws, ws))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dpr = [cfg.drop_path_rate * i / (cfg.depth - 1) if cfg.depth > 1 else 0.0 for i in range(cfg.depth)]  # linear 0 -> rate
        inner = cfg.inner_blocks if cfg.inner_blocks is not None else (True,) * cfg.depth
        self.blocks = nn.ModuleList(
            TNTBlock(c, D, m, cfg.inner_heads, cfg.outer_heads, cfg.mlp_ratio, cfg.inner_mlp_ratio, cfg.qkv_bias,
                     cfg.drop_rate, cfg.attn_drop_rate, dpr[i], cfg.legacy, bool(inner[i]), cfg.bits,
                     cfg.gate_attention, cfg.gate_mlp, cfg.gate_inner)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, cfg.num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.patch_pos, std=0.02)
        nn.init.trunc_normal_(self.pixel_pos, std=0.02)
        self.apply(self._init_weights)
        self.vtp_config: VTPConfig | None = None

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Position embeddings and the class token are excluded from weight decay (reference)."""
        return {"patch_pos", "pixel_pos", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        words = self.pixel_embed(x, self.pixel_pos)
        patches = self.norm2_proj(self.proj(self.norm1_proj(words.reshape(B, self.num_patches, -1))))
        patches = torch.cat((self.cls_token.expand(B, -1, -1), patches), dim=1) + self.patch_pos
        patches = self.pos_drop(patches)
        for blk in self.blocks:
            words, patches = blk(words, patches)
        return self.norm(patches)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def auxiliary_loss(self) -> torch.Tensor | None:
        """VTP's L1 term ``lambda * sum |a|`` when the recipe adds it to the loss (``l1_mode="loss"``)
        and the model is still in its sparsity phase; ``None`` otherwise (``ClassificationModule``
        adds whatever this returns to the cross-entropy)."""
        cfg = self.vtp_config
        if cfg is None or cfg.l1_mode != "loss" or getattr(self, "vtp_pruned", False) or not self.training:
            return None
        from supernets.vtp import gate_l1

        return cfg.lam * gate_l1(self)


# ---------------------------------------------------------------------------------------------
# builder of the ``tnt`` space
# ---------------------------------------------------------------------------------------------

INNER_BLOCK_PATTERNS = ("all", "even", "first_half", "none")


def inner_block_flags(pattern: str, depth: int) -> tuple[bool, ...]:
    """Which blocks keep the inner transformer: all, every other one (0, 2, ...), the first half, none."""
    if pattern == "all":
        return (True,) * depth
    if pattern == "even":
        return tuple(i % 2 == 0 for i in range(depth))
    if pattern == "first_half":
        return tuple(i < (depth + 1) // 2 for i in range(depth))
    if pattern == "none":
        return (False,) * depth
    raise ValueError(f"tnt.inner_blocks: expected one of {list(INNER_BLOCK_PATTERNS)}, found {pattern!r}")


def _input_geometry(input_shape: Sequence[int] | None, image_size: int | Sequence[int] | None, in_chans: int | None) -> tuple[int, int, int]:
    if input_shape is not None:
        if len(input_shape) != 3:
            raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
        c, h, w = (int(v) for v in input_shape)
        if in_chans is not None and int(in_chans) != c:
            raise ValueError(f"in_chans: expected {c} to match input_shape, found {in_chans}")
        return c, h, w
    if image_size is not None:
        h, w = (int(image_size), int(image_size)) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
        return (3 if in_chans is None else int(in_chans)), h, w
    return (1 if in_chans is None else int(in_chans)), 8, 8  # the platform default: 8x8 digits


def _largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of ``n`` not above ``cap`` (fits a requested patch or word split to the data)."""
    if cap < 1:
        raise ValueError(f"expected a positive size, found {cap}")
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def tnt_config(arch: Mapping[str, Any], c: int, h: int, w: int, num_classes: int) -> tuple[TNTConfig, VTPConfig | None]:
    """The ``TNTConfig`` (and VTP recipe, if enabled) of a ``tnt`` space architecture.

    The space is independent of the data, so sizes are fitted to it: an explicit patch size becomes
    the largest divisor of the image side(s) not above it, an explicit word split the largest
    divisor of the patch size not above it ("auto" picks both from the image size). The model's
    ``cfg`` records the values used."""
    patch = arch.get("tnt.patch_size", "auto")
    patch = auto_patch_size(h, w) if patch == "auto" else _largest_divisor_at_most(math.gcd(h, w), int(patch))
    split = arch.get("tnt.inner_split", "auto")
    wps = auto_words_per_side(patch) if split == "auto" else _largest_divisor_at_most(patch, int(split))
    outer_heads, inner_heads = int(arch["tnt.outer_heads"]), int(arch["tnt.inner_heads"])
    depth = int(arch["tnt.depth"])
    vtp = None
    if arch.get("vtp.enabled", False):
        scope = arch.get("vtp.threshold_scope", "global")
        block_keep = {i: float(arch[f"vtp.block{i}.keep_ratio"]) for i in range(depth) if f"vtp.block{i}.keep_ratio" in arch}
        vtp = VTPConfig(lam=float(arch.get("vtp.lambda", 1e-4)), prune_rate=float(arch.get("vtp.prune_rate", 0.3)),
                        placement=arch.get("vtp.placement", "qkv_out+mlp_hidden"), scope=scope,
                        head_rounding=arch.get("vtp.head_rounding", "multiple"), l1_mode=arch.get("vtp.l1_mode", "subgradient"),
                        sparse_fraction=float(arch.get("vtp.sparse_fraction", 0.5)), block_keep=block_keep)
    cfg = TNTConfig(
        img_size=(h, w), in_chans=c, num_classes=int(num_classes), patch_size=patch, words_per_side=wps,
        embed_dim=make_divisible(int(arch["tnt.embed_dim"]), outer_heads), inner_dim=make_divisible(int(arch["tnt.inner_dim"]), inner_heads),
        depth=depth, outer_heads=outer_heads, inner_heads=inner_heads, mlp_ratio=float(arch["tnt.mlp_ratio"]),
        inner_mlp_ratio=float(arch.get("tnt.inner_mlp_ratio", 4)), drop_path_rate=float(arch.get("tnt.drop_path_rate", 0.0)),
        legacy=arch.get("tnt.variant", "v2") == "legacy", inner_blocks=inner_block_flags(arch.get("tnt.inner_blocks", "all"), depth),
        bits=int(arch.get("tnt.bits", 32)),
        gate_attention=bool(vtp and vtp.gate_attention), gate_mlp=bool(vtp and vtp.gate_mlp),
        gate_inner=bool(vtp and arch.get("vtp.gate_inner", False)),
    )
    return cfg, vtp


def build_tnt(
    arch: Mapping[str, Any],
    *,
    input_shape: Sequence[int] | None = None,
    image_size: int | Sequence[int] | None = None,
    in_chans: int | None = None,
    num_classes: int = 10,
    **_: Any,
) -> TNT:
    """Build a ``tnt`` space architecture sized to the data: ``input_shape=(C, H, W)`` (what the
    search passes), or ``image_size`` (+ ``in_chans``, default 3); neither means 1x8x8 digits.
    Dims not divisible by their head counts are rounded with ``make_divisible`` (official rule)."""
    c, h, w = _input_geometry(input_shape, image_size, in_chans)
    cfg, vtp = tnt_config(arch, c, h, w, num_classes)
    model = TNT(cfg)
    model.vtp_config = vtp
    return model
