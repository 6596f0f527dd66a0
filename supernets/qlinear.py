"""Fake-quantised linear layer and activation quantiser for the transformer spaces (TNT, VTP).

Why a subclass of ``nn.Linear``: pruning code (``supernets.vtp``) slices ``weight``/``bias`` and
rebuilds layers of the same class, so a quantised layer must look like a linear layer. The rounding
rule is the one of ``QuantConv2d`` (``supernets.ops._quant_utils``): symmetric signed narrow-range
grid ``[-(2^(b-1)-1), 2^(b-1)-1]``, max-abs scales, clipped straight-through gradient. Weights use a
per-tensor max-abs scale; activations a *dynamic* per-tensor max-abs scale (the batch value, no EMA:
transformer activations vary a lot between layers and tokens, and a dynamic scale keeps this layer
free of calibration state). ``bits=32`` is float passthrough, so bits can be one search dimension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernets.ops._quant_utils import check_bits, qmax_for, quantize_int_ste

__all__ = ["QuantLinear", "fake_quant", "make_linear", "linear_workload"]

_EPS = 1e-12


def fake_quant(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``s * round(x / s)`` at ``bits`` with a dynamic per-tensor max-abs scale (identity at 32 bits)."""
    if bits >= 32:
        return x
    qmax = qmax_for(bits)
    scale = (x.detach().abs().amax().clamp(min=_EPS) / qmax).to(x.dtype)
    return quantize_int_ste(x, scale, qmax) * scale


class QuantLinear(nn.Linear):
    """``nn.Linear`` with fake-quantised weights (``bits``) and inputs (``act_bits``, default ``bits``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, bits: int = 8, act_bits: int | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.bits = check_bits(bits)
        self.act_bits = check_bits(bits if act_bits is None else act_bits, "act_bits")

    @property
    def w_bits(self) -> int:
        return self.bits

    @property
    def a_bits(self) -> int:
        return self.act_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fake_quant(x, self.act_bits), fake_quant(self.weight, self.bits), self.bias)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        rows = 1
        for v in input_shape[:-1]:
            rows *= int(v)
        return linear_workload(rows, self.in_features, self.out_features, self.bias is not None, self.bits, self.act_bits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, act_bits={self.act_bits}"


def make_linear(in_features: int, out_features: int, bias: bool = True, bits: int = 32) -> nn.Linear:
    """A plain ``nn.Linear`` at 32 bits, a ``QuantLinear`` below (same attribute names either way)."""
    if bits >= 32:
        return nn.Linear(in_features, out_features, bias=bias)
    return QuantLinear(in_features, out_features, bias=bias, bits=bits)


def linear_bits(layer: nn.Module) -> int:
    """Operand width of a layer made by ``make_linear`` (32 for a float ``nn.Linear``)."""
    return int(getattr(layer, "bits", 32))


def linear_workload(rows: int, in_features: int, out_features: int, bias: bool, w_bits: int, a_bits: int, **extra) -> dict:
    """Workload dict (docs/architecture.md) of ``rows`` tokens through an ``in -> out`` linear layer."""
    wl = {
        "op": "linear",
        "ops": rows * in_features * out_features,
        "w_bits": int(w_bits),
        "a_bits": int(a_bits),
        "params": in_features * out_features + (out_features if bias else 0),
        "in_elems": rows * in_features,
        "out_elems": rows * out_features,
        "in_channels": in_features,
        "out_channels": out_features,
        "kernel": 1,
        "out_pixels": rows,
    }
    wl.update(extra)
    return wl
