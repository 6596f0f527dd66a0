"""Quantised convolution and quantised adder convolution with an integer inference path.

``QuantConv2d``: fake-quantised weights and activations at b bits on a symmetric signed grid
``[-(2^(b-1)-1), 2^(b-1)-1]`` with max-abs scales (per tensor, or per output channel for weights),
clipped straight-through gradients. The float forward runs the convolution on the *integer levels*
(held in a float tensor) and multiplies by ``s_x * s_w`` afterwards; that has exactly the gradient of
the textbook ``conv(s_x q_x, s_w q_w)`` form, but its value equals the integer path
(``int64`` accumulation, then the same rescale) bit for bit whenever the accumulator fits the float
mantissa (|acc| < 2^24 in fp32, 2^53 in fp64); 16-bit operands therefore need fp64 for exactness.
On CUDA, TF32 convolutions break that guarantee (``torch.backends.cudnn.allow_tf32``).

``QuantAdderConv2d``: AdderNet hardware paper (Wang et al., arXiv 2101.10015): weights and activations
share **one** scale ``s`` so that ``|s X_q - s F_q| = s |X_q - F_q|`` and the integer datapath is pure
subtract / abs / accumulate, ``Y = -s sum |X_q - F_q|``. The float path runs ``adder_conv2d`` (from
``supernets.ops.adder``, with AdderNet's full-precision / HardTanh backward in float units) on the
dequantised values ``s X_q`` and ``s F_q``. With ``scale_mode="pow2"`` (default: a power-of-two scale
requantises by a shift, as the author's FPGA demo ``mqhuangGit/AdderNet-FPGA`` does) every step is
exact in floating point, so the integer path equals the float path bit for bit; with
``scale_mode="float"`` they agree to float rounding only. How the paper picks the shared scale is not
known (the spec's guess, from memory: max-abs over weights and activations), hence ``scale_source``
in {"max", "weight", "percentile"}.

Activation scales are calibrated from max-abs statistics: the batch value in training (also updating
an EMA buffer, momentum ``act_momentum``), the EMA buffer in eval mode (``act_calibration="ema"``), or
always the batch value (``"dynamic"``). Scales are not learned (no gradient). Bits: 2-8, 16, or 32
meaning float passthrough, so "bits" can be one search dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from supernets.ops._quant_utils import (
    active_slice,
    alr_rescale,
    check_bits,
    check_channels,
    check_progress,
    conv_workload,
    pair,
    pow2_ceil,
    qmax_for,
    quantize_int,
    quantize_int_ste,
)
from supernets.ops.registry import register_op

__all__ = ["QuantConv2d", "QuantAdderConv2d", "int_conv2d", "int_adder_conv2d"]

_EPS = 1e-12


def _int_patches(q: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """Integer im2col as a view: ``(N, C, Ho, Wo, kh, kw)`` (zero padding, any dtype)."""
    qp = F.pad(q, (padding[1], padding[1], padding[0], padding[0]))
    eh, ew = dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1
    return qp.unfold(2, eh, stride[0]).unfold(3, ew, stride[1])[..., :: dilation[0], :: dilation[1]]


def int_conv2d(qx: torch.Tensor, qw: torch.Tensor, stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """Integer cross-correlation with int64 accumulation (the deployed MAC datapath, simulated)."""
    if qx.is_floating_point() or qw.is_floating_point():
        raise TypeError(f"int_conv2d expects integer tensors, got {qx.dtype} and {qw.dtype}")
    device = qx.device
    k = (qw.shape[2], qw.shape[3])
    # int64 matmul is a CPU kernel (CUDA has none), so the simulation runs on the CPU
    pt = _int_patches(qx.to("cpu", torch.int64), k, pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation"))
    n, c, ho, wo = pt.shape[:4]
    cg, og = c // groups, qw.shape[0] // groups
    w = qw.to("cpu", torch.int64)
    outs = [torch.einsum("nchwij,ocij->nohw", pt[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og]) for g in range(groups)]
    return torch.cat(outs, 1).to(device)


def int_adder_conv2d(qx: torch.Tensor, qw: torch.Tensor, stride=1, padding=0, dilation=1, groups: int = 1, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """Integer adder kernel ``-sum |X_q - F_q|`` with int64 accumulation, zero padding as ``F.unfold``.

    Chunked over output rows so the ``(N, C_out, C_in*k*k, rows*Wo)`` temporary stays bounded.
    """
    if qx.is_floating_point() or qw.is_floating_point():
        raise TypeError(f"int_adder_conv2d expects integer tensors, got {qx.dtype} and {qw.dtype}")
    k = (qw.shape[2], qw.shape[3])
    pt = _int_patches(qx.to(torch.int64), k, pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation"))
    n, c, ho, wo = pt.shape[:4]
    cg, og = c // groups, qw.shape[0] // groups
    w = qw.to(torch.int64)
    out = torch.empty(n, qw.shape[0], ho, wo, dtype=torch.int64, device=qx.device)
    rows = max(1, chunk_elems // max(1, n * og * cg * k[0] * k[1] * wo))
    for g in range(groups):
        wg = w[g * og : (g + 1) * og].reshape(1, og, cg * k[0] * k[1], 1, 1)
        for r0 in range(0, ho, rows):
            cols = pt[:, g * cg : (g + 1) * cg, r0 : r0 + rows].permute(0, 1, 4, 5, 2, 3).reshape(n, 1, cg * k[0] * k[1], -1, wo)
            out[:, g * og : (g + 1) * og, r0 : r0 + rows] = -(cols - wg).abs().sum(2)
    return out


def _active_params(module: nn.Module, x: torch.Tensor, out_channels: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    oc, cin = active_slice(module, x, out_channels)
    w = module.weight if (oc, cin) == (module.out_channels, module.in_channels) else module.weight[:oc, :cin]
    return w, (None if module.bias is None else module.bias[:oc])


class _ActCalibration(nn.Module):
    """Max-abs (or percentile) activation statistic: batch value in training + EMA buffer for eval."""

    def __init__(self, mode: str, momentum: float) -> None:
        super().__init__()
        if mode not in ("ema", "dynamic"):
            raise ValueError(f"act_calibration must be 'ema' or 'dynamic', got {mode!r}")
        if not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"act_momentum must be in (0, 1], got {momentum!r}")
        self.mode, self.momentum = mode, float(momentum)
        self.register_buffer("act_absmax", torch.zeros(()))  # 0 = not calibrated yet

    def statistic(self, batch_stat: torch.Tensor, training: bool) -> torch.Tensor:
        # torch.where instead of python branches on the buffer: no device sync per forward
        batch_stat = batch_stat.detach().to(self.act_absmax.dtype)
        if self.mode == "dynamic":
            return batch_stat
        buf = self.act_absmax
        if training:
            ema = buf * (1.0 - self.momentum) + self.momentum * batch_stat
            buf.copy_(torch.where(buf == 0, batch_stat, ema))
            return batch_stat
        return torch.where(buf > 0, buf, batch_stat)


def _abs_stat(t: torch.Tensor, source: str, percentile: float, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    a = t.detach().abs()
    if source == "percentile":
        flat = a.reshape(-1)
        k = min(flat.numel(), max(1, math.ceil(percentile / 100.0 * flat.numel())))
        return flat.kthvalue(k).values
    if dims is None:
        return a.max()
    return a.amax(dim=dims, keepdim=True)


def _finish_scale(raw: torch.Tensor, qmax: int, mode: str) -> torch.Tensor:
    s = raw.clamp(min=_EPS) / qmax
    return pow2_ceil(s) if mode == "pow2" else s


@register_op("quant_conv")
class QuantConv2d(nn.Module):
    """Fake-quantised ``nn.Conv2d`` with an exact integer inference path (``integer_forward``).

    ``bits`` sets weights and (unless ``act_bits`` is given) activations; 32 is float passthrough.
    ``granularity``: weight scales "per_tensor" or "per_channel" (per output channel); activations are
    always per tensor. ``scale_mode``: "float" (max-abs / qmax) or "pow2" (rounded up to a power of two).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        bits: int = 8,
        act_bits: int | None = None,
        granularity: str = "per_tensor",
        scale_mode: str = "float",
        act_calibration: str = "ema",
        act_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, groups)
        if granularity not in ("per_tensor", "per_channel"):
            raise ValueError(f"granularity must be 'per_tensor' or 'per_channel', got {granularity!r}")
        if scale_mode not in ("float", "pow2"):
            raise ValueError(f"scale_mode must be 'float' or 'pow2', got {scale_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
        self.bits = check_bits(bits)
        self.act_bits = check_bits(bits if act_bits is None else act_bits, "act_bits")
        self.granularity, self.scale_mode = granularity, scale_mode
        self.calib = _ActCalibration(act_calibration, act_momentum)
        ref = nn.Conv2d(in_channels, out_channels, self.kernel_size, groups=groups, bias=bias)  # nn.Conv2d's init
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None
        self.active_out_channels: int | None = None

    def set_progress(self, progress: float) -> None:
        """No schedule (scales are calibrated, not annealed); present for the uniform op API."""
        check_progress(progress)

    def weight_scale(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``s_w`` of ``weight`` (default: the whole layer): shape () per tensor or (C_out, 1, 1, 1)."""
        w = self.weight if weight is None else weight
        dims = (1, 2, 3) if self.granularity == "per_channel" else None
        return _finish_scale(_abs_stat(w, "max", 100.0, dims), qmax_for(self.bits), self.scale_mode)

    def act_scale(self, x: torch.Tensor, update: bool | None = None) -> torch.Tensor:
        """``s_x`` (per tensor); ``update`` defaults to ``self.training`` (EMA update + batch value)."""
        training = self.training if update is None else update
        stat = self.calib.statistic(_abs_stat(x, "max", 100.0), training)
        return _finish_scale(stat.to(x.dtype), qmax_for(self.act_bits), self.scale_mode)

    def _out_scale(self, s_x: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
        return (s_x * s_w).reshape(1, -1, 1, 1) if s_w.dim() else (s_x * s_w)

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """``out_channels`` (or ``active_out_channels``): supernet slicing as in ``AdderConv2d``;
        the weight scale then follows the active filters."""
        weight, bias = _active_params(self, x, out_channels)
        if self.bits == 32 and self.act_bits == 32:
            return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        if self.act_bits < 32:
            s_x = self.act_scale(x)
            xq = quantize_int_ste(x, s_x, qmax_for(self.act_bits))
        else:
            s_x, xq = one, x
        if self.bits < 32:
            s_w = self.weight_scale(weight).to(x.dtype)
            wq = quantize_int_ste(weight, s_w, qmax_for(self.bits))
        else:
            s_w, wq = one, weight
        acc = F.conv2d(xq, wq, None, self.stride, self.padding, self.dilation, self.groups)
        y = acc * self._out_scale(s_x, s_w)
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def integer_forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """Deployed arithmetic: int levels, int64 MACs, one float rescale per output (+ bias).

        Uses eval-mode scales (no EMA update); equals ``forward`` in eval mode exactly when the float
        accumulator is exact (see module docstring).
        """
        if self.bits == 32 or self.act_bits == 32:
            raise ValueError(f"integer_forward needs integer weights and activations, got bits={self.bits}, act_bits={self.act_bits}")
        weight, bias = _active_params(self, x, out_channels)
        s_x = self.act_scale(x, update=False)
        s_w = self.weight_scale(weight).to(x.dtype)
        qx = quantize_int(x, s_x, qmax_for(self.act_bits)).to(torch.int64)
        qw = quantize_int(weight, s_w, qmax_for(self.bits)).to(torch.int64)
        acc = int_conv2d(qx, qw, self.stride, self.padding, self.dilation, self.groups)
        y = acc.to(x.dtype) * self._out_scale(s_x, s_w)
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        """A multiplication conv (``conv``, or ``dwconv`` when depthwise) with ``w_bits``/``a_bits``."""
        dw = self.groups > 1 and self.groups == self.in_channels == self.out_channels
        return conv_workload("dwconv" if dw else "conv", input_shape, output_shape, in_channels=int(input_shape[1]),
                             out_channels=int(output_shape[1]), kernel=self.kernel_size, groups=self.groups,
                             w_bits=self.bits, a_bits=self.act_bits, bias=self.bias is not None, quant_granularity=self.granularity)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bits={self.bits}, act_bits={self.act_bits}, granularity={self.granularity!r}, scale_mode={self.scale_mode!r}")


@register_op("quant_adder")
class QuantAdderConv2d(nn.Module):
    """Adder convolution with one shared weight/activation scale at ``bits`` (4, 8, 16; 32 = float).

    ``scale_source``: "max" (max-abs over weights and activations), "weight" (max|W| only; activations
    beyond it saturate) or "percentile" (``percentile`` of |W| and of |X|, the larger one).
    ``scale_mode``: "pow2" (default; shift requantisation, exact float/integer parity) or "float".
    Weights are initialised N(0, 1) as in the official AdderNet code; ``p`` is passed to
    ``adder_conv2d`` (l_p kernel; 1 = AdderNet; the integer path needs p = 1). For QAT fine-tuning,
    ``apply_alr()`` applies AdderNet's ALR (``alr="accumulated"``, ``eta=0.2``) like ``AdderConv2d``.
    """

    supports_alr = True  # duck-typed marker shared with AdderConv2d (adder.apply_alr / set_adder_p)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        bits: int = 8,
        scale_source: str = "max",
        percentile: float = 99.99,
        scale_mode: str = "pow2",
        act_calibration: str = "ema",
        act_momentum: float = 0.1,
        p: float = 1.0,
        eta: float = 0.2,
        alr: str = "accumulated",
        alr_granularity: str = "layer",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, groups)
        if scale_source not in ("max", "weight", "percentile"):
            raise ValueError(f"scale_source must be 'max', 'weight' or 'percentile', got {scale_source!r}")
        if not 0.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        if scale_mode not in ("float", "pow2"):
            raise ValueError(f"scale_mode must be 'float' or 'pow2', got {scale_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
        self.bits = check_bits(bits)
        self.scale_source, self.percentile, self.scale_mode = scale_source, float(percentile), scale_mode
        if alr not in ("accumulated", "off"):
            raise ValueError(f"alr must be 'accumulated' or 'off', got {alr!r}")
        if alr_granularity not in ("layer", "filter"):
            raise ValueError(f"alr_granularity must be 'layer' or 'filter', got {alr_granularity!r}")
        if not float(eta) > 0:
            raise ValueError(f"eta must be > 0, got {eta!r}")
        if not 1.0 <= float(p) <= 2.0:
            raise ValueError(f"p must be in [1, 2], got {p!r}")
        self.p = float(p)
        self.eta, self.alr, self.alr_granularity = float(eta), alr, alr_granularity
        self.calib = _ActCalibration(act_calibration, act_momentum)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.rand(out_channels)) if bias else None
        self.active_out_channels: int | None = None

    def set_progress(self, progress: float) -> None:
        """No schedule; present for the uniform op API."""
        check_progress(progress)

    @torch.no_grad()
    def apply_alr(self) -> bool:
        """AdderNet ALR on ``weight.grad`` (QAT fine-tuning keeps the adder's training rule)."""
        if self.alr != "accumulated" or self.weight.grad is None:
            return False
        alr_rescale(self.weight.grad, self.eta, self.alr_granularity)
        return True

    def shared_scale(self, x: torch.Tensor, update: bool | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The one scale ``s`` for weights (default: the whole layer) and activations (scalar)."""
        training = self.training if update is None else update
        w_stat = _abs_stat(self.weight if weight is None else weight, self.scale_source, self.percentile).to(x.dtype)
        if self.scale_source == "weight":
            raw = w_stat
        else:
            a_stat = self.calib.statistic(_abs_stat(x, self.scale_source, self.percentile), training).to(x.dtype)
            raw = torch.maximum(w_stat, a_stat)
        return _finish_scale(raw, qmax_for(self.bits), self.scale_mode)

    def _adder(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        from supernets.ops.adder import adder_conv2d  # lazy: written by another module owner

        return adder_conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups, p=self.p)

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """``out_channels`` (or ``active_out_channels``): supernet slicing as in ``AdderConv2d``."""
        weight, bias = _active_params(self, x, out_channels)
        if self.bits == 32:
            return self._adder(x, weight, bias)
        s = self.shared_scale(x, weight=weight)
        q = qmax_for(self.bits)
        x_hat = quantize_int_ste(x, s, q) * s
        w_hat = quantize_int_ste(weight, s, q) * s
        return self._adder(x_hat, w_hat, bias)

    @torch.no_grad()
    def integer_forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """Deployed arithmetic: ``-s * sum |X_q - F_q|`` with int64 accumulation (+ bias)."""
        if self.bits == 32:
            raise ValueError("integer_forward needs bits < 32, got bits=32")
        if self.p != 1.0:
            raise ValueError(f"integer_forward implements the l1 adder (p=1), got p={self.p}")
        weight, bias = _active_params(self, x, out_channels)
        s = self.shared_scale(x, update=False, weight=weight)
        q = qmax_for(self.bits)
        qx = quantize_int(x, s, q).to(torch.int64)
        qw = quantize_int(weight, s, q).to(torch.int64)
        acc = int_adder_conv2d(qx, qw, self.stride, self.padding, self.dilation, self.groups)
        y = acc.to(x.dtype) * s
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        """``adder_conv`` with w_bits = a_bits = bits (one |x - w| + accumulate per tap)."""
        return conv_workload("adder_conv", input_shape, output_shape, in_channels=int(input_shape[1]), out_channels=int(output_shape[1]),
                             kernel=self.kernel_size, groups=self.groups, w_bits=self.bits, a_bits=self.bits,
                             bias=self.bias is not None, shared_scale=True)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bits={self.bits}, scale_source={self.scale_source!r}, scale_mode={self.scale_mode!r}")
