"""Config-level workloads of the ``tnt`` space: the cost model's rows without torch.

Contract (``tests/hw_cost/test_space_contract.py``): ``tnt_workloads(arch, (N, C, H, W),
num_classes=K)`` costs, row for row, what ``hw_cost.trace_workloads`` records for ``model =
supernets.build("tnt", arch, input_shape=(C, H, W), num_classes=K)`` at any ``default_bits``.

It mirrors, and must be kept in step with, ``supernets/tnt.py`` (``tnt_config``: patch and word
split fitted to the image, dims rounded with ``make_divisible``; the forward order of ``TNT`` and
``TNTBlock``; the ``hw_workload`` rows of ``Attention``, ``DropPath``, ``QuantLinear`` and the VTP
``ChannelGate``) and the tracer's rules (``hw_cost/trace.py``): a LayerNorm, add or concatenation
that consumes the output of the op just before it is ``fused``; a reshape in between breaks that.
Spaces must not import supernets (torch), hence the mirror; the contract test keeps them equal.

Rows of standard layers carry no bits (the consumer's ``hardware.default_bits`` applies, as it does
to a traced model); self-described rows (attention, quantised linears, gates) carry their own.
The rows depend on a few numbers only: they are written as numeric ``Rows`` once per distinct
group and handed over as ``RowBlock``s (``spaces.workload_rows``), the batch path's fastest form.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping, Sequence

from spaces.workload_rows import RowBlock, Rows
from spaces.workload_shapes import check_shape


def make_divisible(v: float, divisor: int) -> int:
    """Mirror of ``supernets.tnt.make_divisible`` (the official TNT rounding rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


@lru_cache(maxsize=1024)
def _largest_divisor_at_most(n: int, cap: int) -> int:
    if cap < 1:
        raise ValueError(f"expected a positive size, found {cap}")
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


@lru_cache(maxsize=256)
def _inner_flags(pattern: str, depth: int) -> tuple[bool, ...]:
    return {"all": (True,) * depth, "even": tuple(i % 2 == 0 for i in range(depth)),
            "first_half": tuple(i < (depth + 1) // 2 for i in range(depth)), "none": (False,) * depth}[pattern]


def _linear(rows: int, fin: int, fout: int, bias: bool, bits: int, name: str) -> dict:
    d = {"op": "linear", "ops": rows * fin * fout, "params": fin * fout + (fout if bias else 0), "in_channels": fin,
         "out_channels": fout, "kernel": 1, "out_pixels": rows, "in_elems": rows * fin, "out_elems": rows * fout, "name": name}
    if bits < 32:  # a QuantLinear describes itself with its bits; nn.Linear is a standard layer
        d.update(w_bits=bits, a_bits=bits)
    return d


def _std(op: str, ops: int, in_e: int, out_e: int, name: str, params: int = 0, fused: bool = False) -> dict:
    d = {"op": op, "ops": ops, "params": params, "in_elems": in_e, "out_elems": out_e, "name": name}
    if fused:
        d["fused"] = True
    return d


def _attention(p: str, B: int, N: int, dim: int, heads: int, bits: int, gated: bool) -> list[dict]:
    """``Attention.hw_workload`` (unpruned: every head ``dim // heads`` wide)."""
    rows, inner, hd = B * N, dim, dim // heads
    # its linears' rows come from ``linear_workload`` with their bits written, 32 included
    lin = lambda fin, fout, bias, name: {**_linear(rows, fin, fout, bias, 32, p + name), "w_bits": bits, "a_bits": bits}  # noqa: E731
    out = [lin(dim, 2 * inner, False, "qk"), lin(dim, inner, False, "v")]
    if gated:
        out.append({"name": p + "gate", "op": "eltwise", "ops": 3 * rows * inner, "w_bits": 32, "a_bits": 32,
                    "params": inner, "in_elems": 3 * rows * inner, "out_elems": 3 * rows * inner})
    out += [
        {"name": p + "qk_matmul", "op": "matmul", "ops": B * N * N * inner, "w_bits": bits, "a_bits": bits,
         "in_elems": 2 * rows * inner, "out_elems": B * heads * N * N, "in_channels": hd, "out_channels": N, "kernel": 1,
         "out_pixels": B * heads * N},
        {"name": p + "softmax", "op": "softmax", "ops": B * heads * N * N, "w_bits": 32, "a_bits": 32,
         "in_elems": B * heads * N * N, "out_elems": B * heads * N * N},
        {"name": p + "av_matmul", "op": "matmul", "ops": B * N * N * inner, "w_bits": bits, "a_bits": bits,
         "in_elems": B * heads * N * N + rows * inner, "out_elems": rows * inner, "in_channels": N, "out_channels": hd,
         "kernel": 1, "out_pixels": B * heads * N},
        lin(inner, dim, True, "proj"),
    ]
    return out


def _mlp(p: str, rows: int, dim: int, hidden: int, bits: int, gated: bool) -> list[dict]:
    out = [_linear(rows, dim, hidden, True, bits, p + "fc1"), _std("gelu", rows * hidden, rows * hidden, rows * hidden, p + "act")]
    if gated and hidden > 0:
        out.append({"op": "eltwise", "ops": rows * hidden, "w_bits": 32, "a_bits": 32, "params": hidden,
                    "in_elems": rows * hidden, "out_elems": rows * hidden, "name": p + "gate"})
    out.append(_linear(rows, hidden, dim, True, bits, p + "fc2"))
    return out


# Rows are written once per distinct group of numbers (``spaces.workload_rows``): a TNT block is
# the join of small parts (a layer, an attention, an MLP) keyed by the few numbers each depends on,
# so they are shared between blocks and architectures; the block is handed over as a ``RowBlock``
# under its prefix ``blocks.<i>.``, so the batch path writes no dict per row and the cost model
# computes each distinct row once.
_CACHE = 1 << 15


@lru_cache(maxsize=_CACHE)
def _one(op: str, ops: int, in_e: int, out_e: int, name: str, params: int = 0, fused: bool = False) -> Rows:
    return Rows.from_dicts([_std(op, ops, in_e, out_e, name, params, fused)])


_DROP = Rows.from_dicts([{"op": "identity", "ops": 0, "name": "drop_path"}])


@lru_cache(maxsize=_CACHE)
def _attn_rows(p: str, B: int, N: int, dim: int, heads: int, bits: int, gated: bool) -> Rows:
    return Rows.from_dicts(_attention(p, B, N, dim, heads, bits, gated))


@lru_cache(maxsize=_CACHE)
def _mlp_rows(p: str, rows: int, dim: int, hidden: int, bits: int, gated: bool) -> Rows:
    return Rows.from_dicts(_mlp(p, rows, dim, hidden, bits, gated))


@lru_cache(maxsize=_CACHE)
def _lin_rows(rows: int, fin: int, fout: int, bias: bool, bits: int, name: str) -> Rows:
    return Rows.from_dicts([_linear(rows, fin, fout, bias, bits, name)])


@lru_cache(maxsize=4 * _CACHE)
def _block(B: int, N: int, m: int, c: int, D: int, ih: int, oh: int, mlp: float, imlp: float, bits: int,
           legacy: bool, inner: bool, dp: bool, ga: bool, gm: bool, gi: bool) -> Rows:
    """Rows of a ``TNTBlock`` (``TNTBlock.forward``) for B images of N patches of m words, names
    relative to ``blocks.<i>.``."""
    drop = [_DROP] if dp else []
    parts: list[Rows] = []
    adds = iter(["add", "add_1", "add_2", "add_3", "add_4"])
    if inner:
        we, pe = B * N * m * c, B * N * D
        parts += [_one("norm", we, we, we, "norm_in", 2 * c), _attn_rows("attn_in.", B * N, m, c, ih, bits, ga and gi), *drop,
                  _one("eltwise", we, 2 * we, we, next(adds), 0, True), _one("norm", we, we, we, "norm_mlp_in", 2 * c, True),
                  _mlp_rows("mlp_in.", B * N * m, c, int(c * imlp), bits, gm and gi), *drop,
                  _one("eltwise", we, 2 * we, we, next(adds), 0, True)]
        if legacy:
            parts += [_one("norm", we, we, we, "norm1_proj", 2 * c, True), _lin_rows(B * N, m * c, D, True, bits, "proj")]
        else:
            parts += [_one("norm", we, we, we, "norm1_proj", 2 * m * c), _lin_rows(B * N, m * c, D, False, bits, "proj"),
                      _one("norm", pe, pe, pe, "norm2_proj", 2 * D, True)]
        parts += [_one("eltwise", pe, 2 * pe, pe, next(adds), 0, True),
                  _one("pixel_shuffle", 0, B * (N + 1) * D, B * (N + 1) * D, "cat", 0, True)]
    te = B * (N + 1) * D
    parts += [_one("norm", te, te, te, "norm_out", 2 * D, True), _attn_rows("attn_out.", B, N + 1, D, oh, bits, ga), *drop,
              _one("eltwise", te, 2 * te, te, next(adds), 0, True), _one("norm", te, te, te, "norm_mlp", 2 * D, True),
              _mlp_rows("mlp.", B * (N + 1), D, int(D * mlp), bits, gm), *drop, _one("eltwise", te, 2 * te, te, next(adds), 0, True)]
    return Rows.join(parts)


@lru_cache(maxsize=_CACHE)
def _stem(B: int, C: int, H: int, W: int, patch: int, wps: int, c: int, D: int, legacy: bool) -> RowBlock:
    """``PixelEmbed`` and the patch projection, class token and position embedding."""
    s = patch // wps
    k = 2 * s - 1
    N, m = (H // patch) * (W // patch), wps * wps
    if legacy:  # one conv over the whole image, unfolded into word windows (the reshape breaks fusion)
        ho, wo = (H + 2 * (s - 1) - k) // s + 1, (W + 2 * (s - 1) - k) // s + 1
        pix, ie = B * ho * wo, B * C * H * W
    else:       # the image unfolded into patches, one conv per patch
        pix, ie = B * N * m, B * N * C * patch * patch
    we, pe, te = B * N * m * c, B * N * D, B * (N + 1) * D
    rows = [
        {"op": "conv", "ops": pix * c * C * k * k, "params": c * C * k * k + c, "in_channels": C, "out_channels": c,
         "kernel": k * k, "out_pixels": pix, "in_elems": ie, "out_elems": pix * c, "name": "pixel_embed.proj"},
        _std("eltwise", we, we + c * m, we, "pixel_embed.add", fused=not legacy),
        _std("norm", we, we, we, "norm1_proj", 2 * m * c),
        _linear(B * N, m * c, D, True, 32, "proj"),
        _std("norm", pe, pe, pe, "norm2_proj", 2 * D, fused=True),
        _std("pixel_shuffle", 0, te, te, "cat", fused=True),
        _std("eltwise", te, te + (N + 1) * D, te, "add", fused=True),
    ]
    return RowBlock(Rows.from_dicts(rows))


@lru_cache(maxsize=_CACHE)
def _head(B: int, N: int, D: int, num_classes: int) -> RowBlock:
    te = B * (N + 1) * D
    return RowBlock(Rows.from_dicts([_std("norm", te, te, te, "norm", 2 * D, fused=True),
                                     _linear(B, D, num_classes, True, 32, "head")]))


_PREFIX = tuple(f"blocks.{i}." for i in range(64))


def tnt_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10) -> tuple:
    """``tnt_workloads`` as cached blocks (stem, one per TNT block, head) of read-only rows."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, found {num_classes!r}")
    B, C, H, W = check_shape(input_shape)
    patch = arch.get("tnt.patch_size", "auto")
    side = min(H, W)
    patch = (16 if side >= 128 else 4 if side >= 32 else 2) if patch == "auto" else _largest_divisor_at_most(math.gcd(H, W), int(patch))
    split = arch.get("tnt.inner_split", "auto")
    wps = ({16: 4, 8: 4, 4: 2, 2: 2, 1: 1}.get(patch, min(4, patch)) if split == "auto"
           else _largest_divisor_at_most(patch, int(split)))
    if H % patch or W % patch:
        raise ValueError(f"patch_size: expected a divisor of the image size {H}x{W}, found {patch}")
    oh, ih = int(arch["tnt.outer_heads"]), int(arch["tnt.inner_heads"])
    D, c = make_divisible(int(arch["tnt.embed_dim"]), oh), make_divisible(int(arch["tnt.inner_dim"]), ih)
    depth, bits = int(arch["tnt.depth"]), int(arch.get("tnt.bits", 32))
    legacy = arch.get("tnt.variant", "v2") == "legacy"
    vtp = bool(arch.get("vtp.enabled", False))
    place = arch.get("vtp.placement", "qkv_out+mlp_hidden")
    ga = vtp and place in ("qkv_out+mlp_hidden", "qkv_out_only")
    gm = vtp and place in ("qkv_out+mlp_hidden", "mlp_hidden_only")
    gi = vtp and bool(arch.get("vtp.gate_inner", False))
    rate = float(arch.get("tnt.drop_path_rate", 0.0))
    dps = _NO_DROP.get(depth) or (False,) * depth if rate == 0 else tuple((rate * i / (depth - 1) if depth > 1 else 0.0) > 0 for i in range(depth))
    return _blocks(B, C, H, W, patch, wps, c, D, ih, oh, float(arch["tnt.mlp_ratio"]), float(arch.get("tnt.inner_mlp_ratio", 4)),
                   bits, legacy, _inner_flags(arch.get("tnt.inner_blocks", "all"), depth), dps, ga, gm, gi, num_classes)


_NO_DROP = {d: (False,) * d for d in range(1, 65)}


@lru_cache(maxsize=_CACHE)
def _blocks(B: int, C: int, H: int, W: int, patch: int, wps: int, c: int, D: int, ih: int, oh: int, mlp: float, imlp: float,
            bits: int, legacy: bool, flags: tuple[bool, ...], dps: tuple[bool, ...], ga: bool, gm: bool, gi: bool,
            num_classes: int) -> tuple:
    """The blocks of every architecture with these numbers (stem, one per TNT block, head)."""
    N, m = (H // patch) * (W // patch), wps * wps
    out = [_stem(B, C, H, W, patch, wps, c, D, legacy)]
    for i, (inner, dp) in enumerate(zip(flags, dps)):
        rows = _block(B, N, m, c, D, ih, oh, mlp, imlp, bits, legacy, inner, dp, ga, gm, gi)
        out.append(RowBlock(rows, _PREFIX[i] if i < 64 else f"blocks.{i}."))
    out.append(_head(B, N, D, num_classes))
    return tuple(out)


def tnt_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10) -> list[Mapping[str, Any]]:
    """Workload dicts of ``tnt`` architecture ``arch`` on input ``(N, C, H, W)`` (see the module docstring)."""
    return [r for b in tnt_workload_blocks(arch, input_shape, num_classes=num_classes) for r in b]


tnt_workloads.blocks = tnt_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)
