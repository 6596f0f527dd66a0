"""Binary convolution with FDA-BNN's Fourier-series sign gradient (Xu et al., NeurIPS 2021, arXiv 2103.00841).

Forward: weights and activations are binarised with ``sign``; the weights are rescaled by
``mean|W|`` (per output channel, or per layer) so the layer keeps the float layer's magnitude.

Backward of ``sign`` (spec ``techniques/addernet-family.md`` section 4.1): ``sign(t)`` on one period of a
square wave is ``(4/pi) sum_i sin((2i+1) w t) / (2i+1)``. FDA keeps ``n + 1`` terms (i = 0..n) and
back-propagates the derivative of that truncated series::

    d sign / dt ~= (4 w / pi) sum_{i=0}^{n} cos((2i+1) w t)        for |t| <= clip, 0 outside

with ``w = omega``. ``grad="ste"`` gives the plain clipped straight-through estimator (1 on
``|t| <= clip``) for comparison.

Noise adaptation: ``e(x) = W2 ReLU(W1 x) + 0.1 sin(x)`` (no biases, hidden width ``d // 64``) is added
with a decaying weight ``alpha`` during training: ``b = sign(x) + alpha e(x)``; at alpha = 0 the forward
is an exact binary network. For weights ``x`` is each flattened output filter (d = C_in/groups*k*k),
for activations the channel vector at each position (d = C_in).

Schedules (``set_progress(progress)``, progress = epoch / max_epochs):

* terms: ``n = n_start + floor((n_end - n_start) * progress)``; defaults 9 -> 18 reproduce BiBench's
  ``9 + floor(9 * epoch / E)`` (n = 9 at the first epoch, 17 at the last).
* noise weight: ``alpha = alpha0 / 2 * (1 + cos(pi * min(1, progress + noise_progress_offset)))``;
  BiBench uses ``(epoch + 1) / E``, i.e. ``noise_progress_offset = 1 / E``.

All constants (omega = 0.1, n 9 -> 18, alpha0 = 0.1, d // 64, the 0.1 sin shortcut) come from the
third-party BiBench reimplementation (``htqin/BiBench`` ``bibench/models/layers/fda.py``), **not
verified against the paper**; the paper's wording of the noise module ("a learnable two-layer module
with a shortcut") is from memory. All are constructor arguments.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from supernets.ops._quant_utils import active_slice, check_channels, check_progress, conv_workload, pair
from supernets.ops.registry import register_op

__all__ = ["fda_sign_grad", "fda_sign_series", "binarize", "NoiseAdaptation", "BinaryConv2d"]


def fda_sign_series(t: torch.Tensor, n: int, omega: float = 0.1) -> torch.Tensor:
    """Truncated Fourier sine series of sign: ``(4/pi) sum_{i=0}^{n} sin((2i+1) omega t) / (2i+1)``."""
    out = torch.zeros_like(t)
    for i in range(n + 1):
        k = 2 * i + 1
        out = out + torch.sin(k * omega * t) / k
    return out * (4.0 / math.pi)


def fda_sign_grad(t: torch.Tensor, n: int, omega: float = 0.1, clip: float | None = 1.0) -> torch.Tensor:
    """Derivative of ``fda_sign_series``: ``(4 omega/pi) sum_{i=0}^{n} cos((2i+1) omega t)``, zero where |t| > clip.

    Evaluated as the sum (n + 1 cosines), not the closed form ``sin(2(n+1) w t) / (2 sin(w t))``,
    which is 0/0 at t = 0. For n >= 15 at omega = 0.1 it turns negative near |t| = 1 (Gibbs ripple);
    that is kept, as in the reference code.
    """
    out = torch.zeros_like(t)
    for i in range(n + 1):
        out = out + torch.cos((2 * i + 1) * omega * t)
    out = out * (4.0 * omega / math.pi)
    if clip is not None:
        out = out * (t.abs() <= clip)
    return out


class _SignFn(torch.autograd.Function):
    """``sign`` forward (zeros mapped to ``zero_value``) with an FDA or STE backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mode: str, n: int, omega: float, clip: float | None, zero_value: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.mode, ctx.n, ctx.omega, ctx.clip = mode, n, omega, clip
        out = torch.sign(x)
        if zero_value != 0.0:
            out = torch.where(x == 0, torch.full_like(x, zero_value), out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if ctx.mode == "fda":
            dx = fda_sign_grad(x, ctx.n, ctx.omega, ctx.clip)
        else:  # clipped straight-through
            dx = torch.ones_like(x) if ctx.clip is None else (x.abs() <= ctx.clip).to(x.dtype)
        return grad * dx, None, None, None, None, None


def binarize(x: torch.Tensor, grad: str = "fda", n: int = 9, omega: float = 0.1, clip: float | None = 1.0, zero_value: float = 1.0) -> torch.Tensor:
    """``sign(x)`` with the chosen surrogate gradient (``"fda"`` or ``"ste"``)."""
    if grad not in ("fda", "ste"):
        raise ValueError(f"grad must be 'fda' or 'ste', got {grad!r}")
    return _SignFn.apply(x, grad, int(n), float(omega), clip, float(zero_value))


class NoiseAdaptation(nn.Module):
    """FDA's noise-adaptation module ``e(x) = W2 ReLU(W1 x) + sin_weight * sin(x)`` over the last dim.

    ``hidden = max(1, d // hidden_ratio)``: BiBench's ``d // 64`` is 0 for d < 64, which collapses e to
    the sine shortcut; we keep at least one hidden unit (a deliberate deviation, documented).
    """

    def __init__(self, dim: int, hidden_ratio: int = 64, sin_weight: float = 0.1) -> None:
        super().__init__()
        if not isinstance(hidden_ratio, int) or hidden_ratio < 1:
            raise ValueError(f"hidden_ratio must be a positive int, got {hidden_ratio!r}")
        hidden = max(1, dim // hidden_ratio)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.sin_weight = float(sin_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x))) + self.sin_weight * torch.sin(x)


@register_op("binary")
class BinaryConv2d(nn.Module):
    """1-bit weights and activations, FDA (``grad="fda"``) or STE (``grad="ste"``) sign gradient.

    Extra keyword args: ``omega`` (0.1), ``n_start``/``n_end`` (9/18, upper summation index n, i.e.
    n + 1 cosine terms), ``clip`` (1.0; None disables the |t| <= clip gradient window), ``noise``
    (True for FDA, always off for STE unless ``noise=True`` is passed), ``alpha0`` (0.1),
    ``noise_hidden_ratio`` (64), ``noise_progress_offset`` (0), ``weight_scale`` ("per_channel" as
    BiBench or "per_layer" as the MindSpore port), ``act_scale`` ("none" as the reference, or
    "per_sample" = detached mean|a| per sample), ``binarize_act`` (True), ``zero_value`` (+1: sign(0)
    maps to +1 so every value is a true bit; 0 reproduces torch.sign's ternary zeros as BiBench).
    The noise module is active only in training mode and only while alpha > 0; all its parameters are
    created eagerly in ``__init__`` (BiBench creates the activation module lazily, so an optimiser
    built before the first forward never trains it).
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
        grad: str = "fda",
        omega: float = 0.1,
        n_start: int = 9,
        n_end: int = 18,
        clip: float | None = 1.0,
        noise: bool | None = None,
        alpha0: float = 0.1,
        noise_hidden_ratio: int = 64,
        noise_progress_offset: float = 0.0,
        weight_scale: str = "per_channel",
        act_scale: str = "none",
        binarize_act: bool = True,
        zero_value: float = 1.0,
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, groups)
        if grad not in ("fda", "ste"):
            raise ValueError(f"grad must be 'fda' or 'ste', got {grad!r}")
        if not (isinstance(n_start, int) and isinstance(n_end, int) and 0 <= n_start <= n_end):
            raise ValueError(f"n_start and n_end must be ints with 0 <= n_start <= n_end, got {n_start!r} and {n_end!r}")
        if not float(omega) > 0:
            raise ValueError(f"omega must be > 0, got {omega!r}")
        if clip is not None and not float(clip) > 0:
            raise ValueError(f"clip must be > 0 or None, got {clip!r}")
        if weight_scale not in ("per_channel", "per_layer"):
            raise ValueError(f"weight_scale must be 'per_channel' or 'per_layer', got {weight_scale!r}")
        if act_scale not in ("none", "per_sample"):
            raise ValueError(f"act_scale must be 'none' or 'per_sample', got {act_scale!r}")
        if alpha0 < 0:
            raise ValueError(f"alpha0 must be >= 0, got {alpha0!r}")
        if zero_value not in (-1.0, 0.0, 1.0):
            raise ValueError(f"zero_value must be -1, 0 or 1, got {zero_value!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
        self.grad, self.omega, self.clip = grad, float(omega), (None if clip is None else float(clip))
        self.n_start, self.n_end = n_start, n_end
        self.alpha0, self.noise_progress_offset = float(alpha0), float(noise_progress_offset)
        self.weight_scale, self.act_scale, self.binarize_act, self.zero_value = weight_scale, act_scale, bool(binarize_act), float(zero_value)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        use_noise = (grad == "fda") if noise is None else bool(noise)
        if use_noise:
            d_w = (in_channels // groups) * self.kernel_size[0] * self.kernel_size[1]
            self.noise_w: NoiseAdaptation | None = NoiseAdaptation(d_w, noise_hidden_ratio)
            self.noise_a: NoiseAdaptation | None = NoiseAdaptation(in_channels, noise_hidden_ratio) if self.binarize_act else None
        else:
            self.noise_w = self.noise_a = None
        self.active_out_channels: int | None = None
        self.progress = 0.0
        self.fda_n = n_start
        self.alpha = self.alpha_at(0.0) if use_noise else 0.0

    def get_extra_state(self) -> dict:
        """Schedule state (progress, n, alpha) saved in ``state_dict``."""
        return {"progress": self.progress, "fda_n": self.fda_n, "alpha": self.alpha}

    def set_extra_state(self, state: dict) -> None:
        self.progress, self.fda_n, self.alpha = float(state["progress"]), int(state["fda_n"]), float(state["alpha"])

    # -- schedules -------------------------------------------------------------------------------
    def n_at(self, progress: float) -> int:
        """Upper summation index n (n + 1 cosine terms) at a progress in [0, 1]."""
        return min(self.n_end, self.n_start + math.floor((self.n_end - self.n_start) * check_progress(progress)))

    def alpha_at(self, progress: float) -> float:
        """Noise weight: cosine decay from alpha0 to 0."""
        t = min(1.0, check_progress(progress) + self.noise_progress_offset)
        return 0.5 * self.alpha0 * (1.0 + math.cos(math.pi * t))

    def set_progress(self, progress: float) -> None:
        """Called by the training callback each epoch with ``epoch / max_epochs``."""
        self.progress = check_progress(progress)
        self.fda_n = self.n_at(progress)
        if self.noise_w is not None:
            self.alpha = self.alpha_at(progress)

    # -- forward ---------------------------------------------------------------------------------
    def _sign(self, x: torch.Tensor) -> torch.Tensor:
        return _SignFn.apply(x, self.grad, self.fda_n, self.omega, self.clip, self.zero_value)

    def binary_weight(self) -> torch.Tensor:
        """Deployed weights: ``sign(W) * mean|W|`` (no noise), the export form."""
        return self._sign(self.weight) * self._weight_scale(self.weight)

    def _weight_scale(self, w: torch.Tensor) -> torch.Tensor:
        w = w.detach()
        if self.weight_scale == "per_channel":
            return w.abs().mean(dim=(1, 2, 3), keepdim=True)
        return w.abs().mean()

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """``out_channels`` (or ``active_out_channels``) uses the first filters over the first
        ``x.shape[1]`` inputs (supernet slicing); the noise modules see zero-padded full-width
        vectors so one module serves every width."""
        oc, cin = active_slice(self, x, out_channels)
        full = (oc, cin) == (self.out_channels, self.in_channels)
        weight = self.weight if full else self.weight[:oc, :cin]
        alpha = self.alpha
        noisy = self.training and alpha > 0.0
        bw = self._sign(weight)
        if noisy and self.noise_w is not None:
            e = self.noise_w(self.weight.flatten(1)).view_as(self.weight)
            bw = bw + alpha * (e if full else e[:oc, :cin])
        bw = bw * self._weight_scale(weight)
        if self.binarize_act:
            a = self._sign(x)
            if noisy and self.noise_a is not None:
                xl = x.movedim(1, -1)
                if cin < self.in_channels:
                    xl = F.pad(xl, (0, self.in_channels - cin))
                a = a + alpha * self.noise_a(xl)[..., :cin].movedim(-1, 1)
            if self.act_scale == "per_sample":
                a = a * x.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
        else:
            a = x
        b = None if self.bias is None else self.bias[:oc]
        return F.conv2d(a, bw, b, self.stride, self.padding, self.dilation, self.groups)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        """XNOR-popcount bit-ops (``binary_conv``, 1-bit operands); the per-channel scale is one
        multiply per output element (``scale_ops``). With ``binarize_act=False`` it is a 1-bit-weight
        ``conv`` with float activations."""
        op, a_bits = ("binary_conv", 1) if self.binarize_act else ("conv", 32)
        n, _, ho, wo = (int(v) for v in output_shape)
        return conv_workload(
            op, input_shape, output_shape, in_channels=int(input_shape[1]), out_channels=int(output_shape[1]),
            kernel=self.kernel_size, groups=self.groups, w_bits=1, a_bits=a_bits, bias=self.bias is not None,
            scale_ops=n * int(output_shape[1]) * ho * wo,
        )

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"grad={self.grad!r}, n={self.fda_n}, alpha={self.alpha:.4f}")
