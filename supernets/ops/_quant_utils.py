"""Shared helpers for the efficient ops: argument checks, schedule progress, quantisers, workloads.

Why one module: the Winograd-adder, binary and quantised ops all need the same nn.Conv2d-like
argument normalisation, the same ``set_progress`` validation, the same symmetric integer quantiser
(so the fake-quantised float path and the integer inference path share one rounding rule) and the
same workload-dict builder for the hw_cost protocol (``docs/architecture.md``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

VALID_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)


def pair(value: Any, name: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence of ints (nn.Conv2d style) to a pair."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got bool {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_channels(in_channels: int, out_channels: int, groups: int = 1) -> None:
    for nm, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{nm} must be a positive int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels and out_channels must be divisible by groups={groups}, got {in_channels} and {out_channels}")


def check_progress(progress: float) -> float:
    """``progress = epoch / max_epochs``; must lie in [0, 1]."""
    try:
        p = float(progress)
    except (TypeError, ValueError):
        raise TypeError(f"progress must be a float in [0, 1], got {progress!r}") from None
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"progress must be in [0, 1] (epoch / max_epochs), got {progress!r}")
    return p


def check_bits(bits: int, name: str = "bits") -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in VALID_BITS:
        raise ValueError(f"{name} must be one of {VALID_BITS} (32 = float passthrough), got {bits!r}")
    return bits


def qmax_for(bits: int) -> int:
    """Largest level of the symmetric signed grid [-(2^(b-1)-1), 2^(b-1)-1] (narrow range, zero exact)."""
    return 2 ** (bits - 1) - 1


def pow2_ceil(x: torch.Tensor) -> torch.Tensor:
    """Smallest power of two >= x (elementwise, x > 0): scales that requantise by a shift."""
    return torch.exp2(torch.ceil(torch.log2(x)))


def quantize_int(x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    """Integer levels ``clamp(round(x / scale), -qmax, qmax)`` as a float tensor holding integers.

    ``torch.round`` rounds half to even; the integer inference path calls this same function, which
    is what makes the two paths agree bit for bit.
    """
    return torch.clamp(torch.round(x / scale), -qmax, qmax)


class _RoundSTE(torch.autograd.Function):
    """``quantize_int`` with a clipped straight-through gradient (Bengio et al. 2013; Courbariaux 2015).

    Backward passes ``grad / scale`` where ``|x / scale| <= qmax + 0.5`` (the inputs that round onto a
    level without being clipped) and 0 elsewhere; the scale itself gets no gradient (it is calibrated
    from max-abs statistics, not learned).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, scale)
        ctx.qmax = qmax
        return quantize_int(x, scale, qmax)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, scale = ctx.saved_tensors
        inside = (x / scale).abs() <= ctx.qmax + 0.5
        return grad * inside / scale, None, None


def quantize_int_ste(x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    """Differentiable integer levels (clipped STE); see ``_RoundSTE``."""
    return _RoundSTE.apply(x, scale.detach(), qmax)


def conv_out_hw(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return ho, wo


def conv_workload(
    op: str,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    *,
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int],
    groups: int,
    w_bits: int,
    a_bits: int,
    bias: bool,
    **extra: Any,
) -> dict:
    """Workload dict (``docs/architecture.md``) of a conv-shaped layer.

    ``ops`` = taps per output element x output elements = N*Ho*Wo*Cout*(Cin/groups)*kh*kw: MACs for a
    multiplication conv, |x-w|+accumulate for an adder conv, XNOR-popcount bit-ops for a binary conv.
    ``weight_bytes``/``act_bytes`` are convenience extras derived from the bit widths.
    """
    if len(input_shape) != 4 or len(output_shape) != 4:
        raise ValueError(f"input_shape and output_shape must be 4-D (N, C, H, W), got {tuple(input_shape)} and {tuple(output_shape)}")
    n, _, h, w = (int(v) for v in input_shape)
    _, _, ho, wo = (int(v) for v in output_shape)
    taps = kernel[0] * kernel[1]
    cin_g = in_channels // groups
    params = out_channels * cin_g * taps + (out_channels if bias else 0)
    out_pixels = n * ho * wo
    in_elems = n * in_channels * h * w
    out_elems = n * out_channels * ho * wo
    wl = {
        "op": op,
        "ops": out_pixels * out_channels * cin_g * taps,
        "w_bits": int(w_bits),
        "a_bits": int(a_bits),
        "params": params,
        "in_elems": in_elems,
        "out_elems": out_elems,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "kernel": taps,
        "out_pixels": out_pixels,
        "weight_bytes": math.ceil(out_channels * cin_g * taps * w_bits / 8) + (4 * out_channels if bias else 0),
        "act_bytes": math.ceil((in_elems + out_elems) * a_bits / 8),
    }
    if groups > 1:
        wl["groups"] = groups
    wl.update(extra)
    return wl


def active_slice(module: Any, x: torch.Tensor, out_channels: int | None) -> tuple[int, int]:
    """(out, in) channel counts a supernet uses at run time: the first ``out_channels`` filters
    (argument, else ``module.active_out_channels``, else all) over the first ``x.shape[1]`` inputs.

    Same convention as ``AdderConv2d``: one set of weights serves every width. Grouped layers are
    not sliced (only their full width is accepted).
    """
    oc = out_channels if out_channels is not None else (getattr(module, "active_out_channels", None) or module.out_channels)
    cin = int(x.shape[1])
    if not isinstance(oc, int) or isinstance(oc, bool) or not 1 <= oc <= module.out_channels:
        raise ValueError(f"out_channels must be an int in [1, {module.out_channels}], got {oc!r}")
    if cin > module.in_channels:
        raise ValueError(f"input has {cin} channels, more than in_channels={module.in_channels}")
    if getattr(module, "groups", 1) > 1 and (cin != module.in_channels or oc != module.out_channels):
        raise ValueError(f"grouped layer (groups={module.groups}) cannot be sliced: got {cin} in / {oc} out channels, expected {module.in_channels} / {module.out_channels}")
    return oc, cin


def alr_rescale(weight_grad: torch.Tensor, eta: float, granularity: str = "layer") -> None:
    """AdderNet's adaptive learning rate (Chen et al. 2020, Eq. 12-13; eta = 0.2 in the official
    code): ``grad <- eta * sqrt(k) * grad / ||grad||_2`` with k the elements normalised together
    (the whole layer, or each filter for ``granularity="filter"``)."""
    if granularity == "layer":
        norm = torch.linalg.vector_norm(weight_grad.float()).clamp_min(1e-12)
        weight_grad.mul_((eta * math.sqrt(weight_grad.numel()) / norm).to(weight_grad.dtype))
    elif granularity == "filter":
        norm = torch.linalg.vector_norm(weight_grad.float().flatten(1), dim=1).clamp_min(1e-12)
        scale = eta * math.sqrt(weight_grad[0].numel()) / norm
        weight_grad.mul_(scale.to(weight_grad.dtype).view(-1, *([1] * (weight_grad.dim() - 1))))
    else:
        raise ValueError(f"ALR granularity must be 'layer' or 'filter', got {granularity!r}")
