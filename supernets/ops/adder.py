"""AdderNet convolution (Chen et al., CVPR 2020, arXiv 1912.13200; extended: arXiv 2105.14202).

Forward ``y = bias - sum_{c,i,j} |x_pad - w|^p`` (p = 1 is AdderNet; 1 < p <= 2 is the lp-norm
training of the extended paper).  Backward, AdderNet rules (paper Eq. 5-6, official ``adder.py``):

* filter gradient: the full-precision difference ``sum_n (X - W) * g``.  It is linear in X, so it
  is computed exactly as ``conv_weight_grad(x, g) - W * sum(g)`` (a GEMM plus a rank-1 term,
  [derived] in the spec §1.6), never by broadcasting;
* input gradient: ``sum_t HardTanh(W - X) * g`` folded back to the input (col2im);
* bias gradient: ``sum g`` (ordinary).

Adaptive learning rate (ALR, paper Eq. 12-13): ``grad_W <- eta * sqrt(k) * grad_W / ||grad_W||``
with k the layer's number of filter elements and eta = 0.2 (official ``/5``).  The official code
does this inside every backward call, which re-normalises each micro-batch (gradient
accumulation) and each replica (DataParallel sums normalised replica gradients, DDP averages
them).  Our default ``alr="accumulated"`` applies it once to the accumulated ``.grad`` just
before ``optimizer.step()`` (call :func:`apply_alr` from an ``on_before_optimizer_step`` hook,
after AMP unscaling and DDP all-reduce); ``alr="per_backward"`` reproduces the official
behaviour; ``alr="off"`` disables it.  On one device with one backward per step both agree.

Implementations (all exact up to float32 summation order):

* CPU float32: the C++/OpenMP kernel of ``csrc/adder_kernel.cpp`` (see ``_adder_native``),
  whose extra memory is O(threads * channels * rows * width).  p = 1 and p = 2 are plain
  float32 arithmetic; fractional p uses a vectorised exp2/log2 (relative error <= 4e-6 per term);
* anything else (CUDA, float64, kernel unavailable, ``lp_grad="exact"`` gradients): a chunked
  pure-torch path that unfolds a few images at a time and broadcasts over bounded column
  chunks (CUDA forward at p = 1: ``torch.cdist``), so neither the ``Cout x Cin*k*k x N*Ho*Wo``
  tensor nor, for large layers, the whole im2col matrix is formed.
"""

from __future__ import annotations

import ctypes
import math
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernets.ops import _adder_native
from supernets.ops.registry import register_op

__all__ = [
    "adder_conv2d",
    "AdderConv2d",
    "apply_alr",
    "set_adder_p",
    "linear_p_schedule",
    "alr_rescale_",
    "native_kernel_available",
    "set_chunk_elements",
]

LpGrad = Literal["adder", "exact"]
AlrMode = Literal["accumulated", "per_backward", "off"]
Impl = Literal["auto", "native", "torch"]

_LP_GRADS = ("adder", "exact")
_ALR_MODES = ("accumulated", "per_backward", "off")
_IMPLS = ("auto", "native", "torch")

# Elements of one broadcast temporary in the pure-torch path (per device type).  CPU: 4 Mi
# elements (16 MiB fp32), CUDA: 64 Mi (fewer launches).  Change with set_chunk_elements().
_CHUNK_ELEMS = {"cpu": 1 << 22, "default": 1 << 26}


def set_chunk_elements(n: int, device_type: str = "cpu") -> None:
    """Bound the temporaries of the pure-torch path to ``n`` elements on ``device_type``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"chunk elements must be a positive int, got {n!r}")
    _CHUNK_ELEMS[device_type if device_type == "cpu" else "default"] = n


def native_kernel_available() -> bool:
    """True if the compiled CPU kernel is loaded (building it on first call)."""
    return _adder_native.get_lib() is not None


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# --------------------------------------------------------------------------------------------
# pure-torch chunked path (any device, any dtype, any p)
# --------------------------------------------------------------------------------------------


def _chunk_budget(device: torch.device) -> int:
    return _CHUNK_ELEMS["cpu" if device.type == "cpu" else "default"]


def _image_chunks(N: int, per_image_cols: int, per_col_temp: int, budget: int) -> int:
    """Images per unfold chunk: the unfolded chunk and one column's temporaries fit the budget."""
    by_cols = budget // max(per_image_cols, 1)
    by_temp = budget // max(per_col_temp, 1)
    return max(1, min(N, by_cols, by_temp))


def _torch_forward(x: Tensor, w: Tensor, stride, padding, dilation, groups: int, p: float,
                   use_cdist: bool | None = None) -> Tensor:
    """Chunked forward.  On CUDA with p = 1 it uses ``torch.cdist(p=1)`` per image chunk (the
    first official version's formula, no broadcast temporary); elsewhere bounded broadcasts."""
    N, C, H, W = x.shape
    Cout, Cg, kh, kw = w.shape
    Ho, Wo = (_out_size(H, kh, stride[0], padding[0], dilation[0]),
              _out_size(W, kw, stride[1], padding[1], dilation[1]))
    L, K, G, Cog = Ho * Wo, Cg * kh * kw, groups, Cout // groups
    budget = _chunk_budget(x.device)
    wc = w.reshape(G, Cog, K)
    out = x.new_empty(N, Cout, L)
    if use_cdist is None:
        use_cdist = x.device.type == "cuda" and p == 1.0
    if use_cdist and p == 1.0:
        nc = max(1, min(N, budget // max(C * kh * kw * L, 1)))
        for n0 in range(0, N, nc):
            xs = x[n0:n0 + nc]
            m = xs.shape[0]
            cols = F.unfold(xs, (kh, kw), dilation=dilation, padding=padding, stride=stride).view(m, G, K, L)
            for gi in range(G):
                xt = cols[:, gi].transpose(1, 2)  # m, L, K
                d = torch.cdist(wc[gi].expand(m, Cog, K), xt, p=1.0)  # m, Cog, L
                out[n0:n0 + m, gi * Cog:(gi + 1) * Cog] = d.neg_()
        return out.view(N, Cout, Ho, Wo)
    nc = _image_chunks(N, C * kh * kw * L, Cout * K, budget)
    for n0 in range(0, N, nc):
        xs = x[n0:n0 + nc]
        m = xs.shape[0]
        cols = F.unfold(xs, (kh, kw), dilation=dilation, padding=padding, stride=stride).view(m, G, K, L)
        lc = max(1, budget // (m * Cout * K))
        for l0 in range(0, L, lc):
            d = cols[:, :, None, :, l0:l0 + lc] - wc[None, :, :, :, None]  # m G Cog K lc
            d = d.abs_() if p == 1.0 else (d.square_() if p == 2.0 else d.abs_().pow_(p))
            out[n0:n0 + m, :, l0:l0 + lc] = d.sum(3).view(m, Cout, -1).neg_()
    return out.view(N, Cout, Ho, Wo)


def _torch_backward(x: Tensor, w: Tensor, g: Tensor, stride, padding, dilation, groups: int, p: float,
                    lp_grad: str, need_x: bool, need_w: bool) -> tuple[Tensor | None, Tensor | None]:
    """Chunked input gradient and (exact-lp rule only) filter gradient."""
    N, C, H, W = x.shape
    Cout, Cg, kh, kw = w.shape
    _, _, Ho, Wo = g.shape
    L, K, G, Cog = Ho * Wo, Cg * kh * kw, groups, Cout // groups
    budget = _chunk_budget(x.device)
    wc = w.reshape(G, Cog, K)
    gx = torch.empty_like(x) if need_x else None
    gw = torch.zeros(G, Cog, K, dtype=w.dtype, device=w.device) if need_w else None
    gcol = g.reshape(N, G, Cog, L)
    nc = _image_chunks(N, C * kh * kw * L, Cout * K, budget)
    for n0 in range(0, N, nc):
        xs = x[n0:n0 + nc]
        m = xs.shape[0]
        cols = F.unfold(xs, (kh, kw), dilation=dilation, padding=padding, stride=stride).view(m, G, K, L)
        dcols = torch.empty_like(cols) if need_x else None
        lc = max(1, budget // (m * Cout * K))
        for l0 in range(0, L, lc):
            gg = gcol[n0:n0 + m, :, :, None, l0:l0 + lc]  # m G Cog 1 lc
            d = wc[None, :, :, :, None] - cols[:, :, None, :, l0:l0 + lc]  # W - X: m G Cog K lc
            if lp_grad == "adder":
                if need_x:
                    dcols[..., l0:l0 + lc] = (d.clamp_(-1.0, 1.0) * gg).sum(2)
            else:
                # exact derivative of -|X - W|^p: d/dW = p|X-W|^(p-1) sign(X-W) = -p|d|^(p-1) sign(d)
                s = d.abs().pow_(p - 1.0).mul_(torch.sign(d)).mul_(p * 1.0)
                if need_x:
                    dcols[..., l0:l0 + lc] = (s * gg).sum(2)
                if need_w:
                    gw -= (s * gg).sum(dim=(0, 4))
        if need_x:
            gx[n0:n0 + m] = F.fold(dcols.view(m, G * K, L), (H, W), (kh, kw), dilation=dilation,
                                   padding=padding, stride=stride)
    return gx, (gw.view_as(w) if need_w else None)


# --------------------------------------------------------------------------------------------
# native CPU kernel
# --------------------------------------------------------------------------------------------


def _geom(x: Tensor, w: Tensor, stride, padding, dilation, groups: int, Ho: int, Wo: int):
    N, C, H, W = x.shape
    Cout, _, kh, kw = w.shape
    vals = (N, C, H, W, Cout, kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0],
            dilation[1], groups, Ho, Wo)
    return (ctypes.c_int64 * 16)(*vals)


def _native_ok(x: Tensor, impl: str) -> bool:
    if impl == "torch" or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    lib = _adder_native.get_lib()
    if lib is None and impl == "native":
        raise RuntimeError(f"impl='native' requested but the kernel is unavailable: {_adder_native.load_error()}")
    return lib is not None


# path for the native kernel: 0 automatic, 1 im2col panels, 2 channel-vector.  Tests force both.
_NATIVE_PATH = 0


def _native_forward(x: Tensor, w: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int,
                    p: float) -> Tensor:
    lib = _adder_native.get_lib()
    N, _, H, W = x.shape
    Cout, _, kh, kw = w.shape
    Ho, Wo = (_out_size(H, kh, stride[0], padding[0], dilation[0]),
              _out_size(W, kw, stride[1], padding[1], dilation[1]))
    y = torch.empty(N, Cout, Ho, Wo, dtype=torch.float32)
    if y.numel() == 0:
        return y
    x, w = x.contiguous(), w.contiguous()
    b = bias.contiguous() if bias is not None else None
    geom = _geom(x, w, stride, padding, dilation, groups, Ho, Wo)
    nt = max(1, torch.get_num_threads())
    ws = torch.empty(lib.adder_forward_workspace(geom, nt, _NATIVE_PATH), dtype=torch.float32)
    rc = lib.adder_forward(x.data_ptr(), w.data_ptr(), b.data_ptr() if b is not None else None,
                           y.data_ptr(), geom, float(p), ws.data_ptr(), nt, _NATIVE_PATH)
    if rc != 0:
        raise RuntimeError(f"adder kernel forward failed with code {rc}")
    return y


def _native_backward_input(x: Tensor, w: Tensor, g: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    lib = _adder_native.get_lib()
    x, w, g = x.contiguous(), w.contiguous(), g.contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    if gx.numel() == 0:
        return gx
    geom = _geom(x, w, stride, padding, dilation, groups, g.shape[2], g.shape[3])
    nt = max(1, torch.get_num_threads())
    ws = torch.empty(lib.adder_backward_input_workspace(geom, nt, _NATIVE_PATH), dtype=torch.float32)
    rc = lib.adder_backward_input(x.data_ptr(), w.data_ptr(), g.data_ptr(), gx.data_ptr(), geom,
                                  ws.data_ptr(), nt, _NATIVE_PATH)
    if rc != 0:
        raise RuntimeError(f"adder kernel backward failed with code {rc}")
    return gx


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------


def alr_rescale_(grad: Tensor, eta: float, numel: int | None = None, granularity: str = "layer") -> Tensor:
    """In place: ``grad <- eta * sqrt(k) * grad / max(||grad||_2, 1e-12)`` (paper Eq. 13).

    ``granularity="layer"`` (official code): one norm over the whole tensor, k = ``numel``
    (default ``grad.numel()``).  ``"filter"``: per output channel, k = elements per filter; the
    extended paper's abstract mentions "each neuron's gradient" (unverified reading, spec §1.7).
    """
    if granularity == "layer":
        k = grad.numel() if numel is None else numel
        norm = torch.linalg.vector_norm(grad.float()).clamp_min(1e-12)
        return grad.mul_((eta * math.sqrt(k)) / norm.to(grad.dtype))
    if granularity == "filter":
        k = grad[0].numel() if numel is None else numel
        norm = torch.linalg.vector_norm(grad.float().flatten(1), dim=1).clamp_min(1e-12)
        scale = (eta * math.sqrt(k)) / norm
        return grad.mul_(scale.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1))))
    raise ValueError(f"ALR granularity must be 'layer' or 'filter', got {granularity!r}")


def _conv_weight_grad(g: Tensor, x: Tensor, w: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """sum_n X g (the ordinary conv filter gradient), without TF32 on CUDA.

    TF32 would round X g to ~1e-3 before the rank-1 term W * sum(g) is subtracted, so the
    difference could lose most of its digits; cuDNN's other settings are left as the user set them.
    """
    args = (g, x, w, None, list(stride), list(padding), list(dilation), False, [0, 0], groups, [False, True, False])
    if x.device.type != "cuda":
        return torch.ops.aten.convolution_backward(*args)[1]
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                     allow_tf32=False):
        return torch.ops.aten.convolution_backward(*args)[1]


class _AdderConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int,
                p: float, lp_grad: str, eta: float | None, alr_granularity: str, impl: str) -> Tensor:
        use_native = _native_ok(x, impl)
        if use_native:
            y = _native_forward(x, w, bias, stride, padding, dilation, groups, p)
        else:
            y = _torch_forward(x, w, stride, padding, dilation, groups, p)
            if bias is not None:
                y = y + bias.view(1, -1, 1, 1)
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups, p, lp_grad, eta, alr_granularity, impl, bias is not None)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups, p, lp_grad, eta, gran, impl, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
        g = g.contiguous()
        gx = gw = gb = None
        gsum = g.sum(dim=(0, 2, 3)) if (need_b or (need_w and lp_grad == "adder")) else None
        if need_b:
            gb = gsum
        if need_w and lp_grad == "adder":
            # sum_n (X - W) g = conv_weight_grad(x, g) - W * sum_n g   (exact, [derived] spec §1.6)
            gw = _conv_weight_grad(g, x, w, stride, padding, dilation, groups)
            gw = gw - w * gsum.view(-1, 1, 1, 1)
        native = lp_grad == "adder" and need_x and _native_ok(x, impl)  # input rule is p-independent
        if native:
            gx = _native_backward_input(x, w, g, stride, padding, dilation, groups)
        if (need_x and not native) or (need_w and lp_grad == "exact"):
            tx, tw = _torch_backward(x, w, g, stride, padding, dilation, groups, p, lp_grad,
                                     need_x and not native, need_w and lp_grad == "exact")
            gx = tx if tx is not None else gx
            gw = tw if tw is not None else gw
        if gw is not None and eta is not None:
            alr_rescale_(gw, eta, granularity=gran)
        return gx, gw, gb, None, None, None, None, None, None, None, None, None


def adder_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1,
                 p: float = 1.0, *, lp_grad: LpGrad = "adder", eta: float | None = None,
                 alr_granularity: str = "layer", impl: Impl = "auto") -> Tensor:
    """AdderNet convolution ``bias - sum |x - w|^p`` with the AdderNet backward.

    Args beyond ``F.conv2d``'s:
        p: exponent of the lp-norm (1 = AdderNet; the extended paper anneals 2 -> 1).
        lp_grad: gradients for p != 1.  ``"adder"`` (default) keeps the CVPR rules for every p
            (filter ``(X - W) g``, input ``HardTanh(W - X) g``); the full-precision filter rule is
            the exact p = 2 gradient up to the factor 2 that ALR normalises away.  ``"exact"``
            uses the true derivative ``p|X-W|^(p-1) sign(X-W)`` for both (sign gradients at p=1).
            Which one the extended paper used is not known (spec §1.7), hence the option.
        eta: if given, ALR is applied inside this call's backward (official per-backward mode).
        alr_granularity: ``"layer"`` (official) or ``"filter"`` for that in-backward ALR.
        impl: ``"auto"``, ``"native"`` (the CPU kernel; error if it is not loaded) or ``"torch"``.
            ``"native"`` only affects float32 CPU tensors; other tensors always use torch.

    Padding is with zeros exactly like ``F.unfold``: padded taps contribute ``-|0 - w|^p``.
    Under autocast and for float16/bfloat16 inputs the op runs in float32 (l1 sums of thousands
    of O(1) terms lose too much in half precision); the output is float32 under autocast and
    the input dtype otherwise.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"adder_conv2d input must be a 4-D tensor (N, C, H, W), got shape {tuple(getattr(x, 'shape', ()))}")
    if weight.dim() != 4:
        raise ValueError(f"adder_conv2d weight must be 4-D (Cout, Cin/groups, kh, kw), got shape {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"groups must be a positive int dividing out_channels={weight.shape[0]}, got {groups!r}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"input has {x.shape[1]} channels, expected weight.shape[1]*groups = {weight.shape[1] * groups}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if not (isinstance(p, (int, float)) and 1.0 <= float(p) <= 2.0):
        raise ValueError(f"p must be a number in [1, 2], got {p!r}")
    if lp_grad not in _LP_GRADS:
        raise ValueError(f"lp_grad must be one of {_LP_GRADS}, got {lp_grad!r}")
    if impl not in _IMPLS:
        raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
    s, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(s) < 1 or min(dl) < 1 or min(pd) < 0:
        raise ValueError(f"stride/dilation must be >= 1 and padding >= 0, got {s}, {dl}, {pd}")
    Ho = _out_size(x.shape[2], weight.shape[2], s[0], pd[0], dl[0])
    Wo = _out_size(x.shape[3], weight.shape[3], s[1], pd[1], dl[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(f"input {tuple(x.shape[2:])} is smaller than the dilated kernel {tuple(weight.shape[2:])} after padding")
    out_dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type):
        out_dtype = torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            return _call(x.float(), weight.float(), None if bias is None else bias.float(), s, pd, dl, groups,
                         float(p), lp_grad, eta, alr_granularity, impl)
    if x.dtype in (torch.float16, torch.bfloat16) or weight.dtype != x.dtype:
        if weight.dtype != x.dtype and not (x.dtype in (torch.float16, torch.bfloat16) and weight.dtype == torch.float32):
            raise TypeError(f"input dtype {x.dtype} and weight dtype {weight.dtype} differ")
        y = _call(x.float(), weight.float(), None if bias is None else bias.float(), s, pd, dl, groups,
                  float(p), lp_grad, eta, alr_granularity, impl)
        return y.to(out_dtype)
    return _call(x, weight, bias, s, pd, dl, groups, float(p), lp_grad, eta, alr_granularity, impl)


def _call(x, w, b, s, pd, dl, groups, p, lp_grad, eta, gran, impl) -> Tensor:
    return _AdderConv2dFn.apply(x, w, b, s, pd, dl, groups, p, lp_grad, eta, gran, impl)


# --------------------------------------------------------------------------------------------
# module
# --------------------------------------------------------------------------------------------


def _register(cls):
    # ``python -m supernets.ops.adder --build`` re-executes this file as ``__main__`` after the
    # package import already registered the class; registering that copy would clash.
    return cls if __name__ == "__main__" else register_op("adder")(cls)


@_register
class AdderConv2d(nn.Module):
    """Drop-in AdderNet replacement for ``nn.Conv2d`` (bias off by default, as the paper).

    ``p`` may be changed between steps (lp-norm schedule, see :func:`set_adder_p`).  For
    supernets, ``forward(x, out_channels=k)`` or ``active_out_channels = k`` uses the first
    ``k`` filters; the input channels follow ``x.shape[1]`` (first ``x.shape[1]`` filter
    channels).  With ``groups > 1`` slicing is supported for depthwise layers
    (``groups == in_channels == out_channels``), where the group count follows the input.
    """

    supports_alr = True  # duck-typed marker used by apply_alr(model)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1,
                 bias: bool = False, eta: float = 0.2, alr: AlrMode = "accumulated", p: float = 1.0,
                 lp_grad: LpGrad = "adder", alr_granularity: str = "layer",
                 p_schedule: tuple[float, float] | None = None) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if alr not in _ALR_MODES:
            raise ValueError(f"alr must be one of {_ALR_MODES}, got {alr!r}")
        if alr_granularity not in ("layer", "filter"):
            raise ValueError(f"alr_granularity must be 'layer' or 'filter', got {alr_granularity!r}")
        if lp_grad not in _LP_GRADS:
            raise ValueError(f"lp_grad must be one of {_LP_GRADS}, got {lp_grad!r}")
        if not (isinstance(eta, (int, float)) and eta > 0):
            raise ValueError(f"eta must be a positive number, got {eta!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
        self.eta, self.alr, self.alr_granularity, self.lp_grad = float(eta), alr, alr_granularity, lp_grad
        self.p = float(p)
        self.active_out_channels: int | None = None
        # (p_start, p_end): the extended paper's l2-to-l1 training; ``set_progress`` (called by the
        # evaluator's ProgressScheduleCallback) moves p linearly from p_start to p_end.
        self.p_schedule = None if p_schedule is None else (float(p_schedule[0]), float(p_schedule[1]))
        if self.p_schedule is not None:
            self.p = self.p_schedule[0]
        # official init: N(0, 1) weights; bias U[0, 1) when enabled
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.rand(out_channels)) if bias else None
        self._alr_rows = 0  # largest active filter prefix since the last apply_alr()
        self._alr_cols = 0

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        if not (isinstance(value, (int, float)) and 1.0 <= float(value) <= 2.0):
            raise ValueError(f"p must be a number in [1, 2], got {value!r}")
        self._p = float(value)

    def _active(self, x: Tensor, out_channels: int | None) -> tuple[Tensor, Tensor | None, int]:
        cin = x.shape[1]
        depthwise = self.groups > 1 and self.groups == self.in_channels == self.out_channels
        oc = out_channels if out_channels is not None else (
            self.active_out_channels or (cin if depthwise else self.out_channels))
        if not isinstance(oc, int) or not 1 <= oc <= self.out_channels:
            raise ValueError(f"out_channels must be an int in [1, {self.out_channels}], got {oc!r}")
        if depthwise:
            if cin > self.in_channels or oc != cin:
                raise ValueError(f"depthwise adder layer: input channels ({cin}) must equal out_channels ({oc}) and be <= {self.in_channels}")
            return self.weight[:oc], (self.bias[:oc] if self.bias is not None else None), cin
        if self.groups > 1:
            if cin != self.in_channels or oc != self.out_channels:
                raise ValueError(f"grouped adder layer (groups={self.groups}) cannot be sliced: got {cin} in / {oc} out channels, expected {self.in_channels} / {self.out_channels}")
            return self.weight, self.bias, self.groups
        if cin > self.in_channels:
            raise ValueError(f"input has {cin} channels, more than in_channels={self.in_channels}")
        w = self.weight if (oc == self.out_channels and cin == self.in_channels) else self.weight[:oc, :cin]
        return w, (self.bias[:oc] if self.bias is not None else None), 1

    def forward(self, x: Tensor, out_channels: int | None = None) -> Tensor:
        w, b, groups = self._active(x, out_channels)
        if torch.is_grad_enabled() and self.weight.requires_grad:
            self._alr_rows = max(self._alr_rows, w.shape[0])
            self._alr_cols = max(self._alr_cols, w.shape[1])
        eta = self.eta if self.alr == "per_backward" else None
        return adder_conv2d(x, w, b, self.stride, self.padding, self.dilation, groups, self.p,
                            lp_grad=self.lp_grad, eta=eta, alr_granularity=self.alr_granularity)

    @torch.no_grad()
    def apply_alr(self) -> bool:
        """Accumulated-mode ALR on ``self.weight.grad`` (call right before ``optimizer.step()``).

        k counts the filter elements that were active since the last call (the largest used
        prefix; the whole layer without slicing), matching per-backward mode on one backward.
        Returns True if a gradient was rescaled.
        """
        rows, cols = self._alr_rows or self.out_channels, self._alr_cols or self.weight.shape[1]
        self._alr_rows = self._alr_cols = 0
        g = self.weight.grad
        if self.alr != "accumulated" or g is None:
            return False
        kk = self.kernel_size[0] * self.kernel_size[1]
        if self.alr_granularity == "layer":
            alr_rescale_(g, self.eta, numel=rows * cols * kk, granularity="layer")
        else:
            alr_rescale_(g, self.eta, numel=cols * kk, granularity="filter")
            if rows < g.shape[0]:
                g[rows:].zero_()  # inactive filters have zero gradient; keep them zero
        return True

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        """Workload per docs/architecture.md: one ``|x-w|`` + accumulate per tap per output."""
        N, cin = int(input_shape[0]), int(input_shape[1])
        cout, Ho, Wo = int(output_shape[1]), int(output_shape[2]), int(output_shape[3])
        depthwise = self.groups > 1 and self.groups == self.in_channels == self.out_channels
        groups = cin if depthwise else self.groups
        kk = self.kernel_size[0] * self.kernel_size[1]
        per_filter = (cin // groups) * kk
        params = cout * per_filter + (cout if self.bias is not None else 0)
        return {
            "op": "adder_conv",
            "ops": N * Ho * Wo * cout * per_filter,
            "w_bits": 32,
            "a_bits": 32,
            "params": params,
            "in_elems": math.prod(int(v) for v in input_shape),
            "out_elems": math.prod(int(v) for v in output_shape),
            "in_channels": cin,
            "out_channels": cout,
            "kernel": kk,
            "out_pixels": N * Ho * Wo,
        }

    def set_progress(self, progress: float) -> None:
        """Follow the lp schedule (no-op without ``p_schedule``): p = start + (end - start) * progress."""
        if self.p_schedule is not None:
            self.p = linear_p_schedule(progress, *self.p_schedule)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        s += f", bias={self.bias is not None}, eta={self.eta}, alr={self.alr!r}, p={self.p}"
        return s


def _adder_modules(model: nn.Module) -> Iterable[nn.Module]:
    return (m for m in model.modules() if getattr(m, "supports_alr", False) and callable(getattr(m, "apply_alr", None)))


def apply_alr(model: nn.Module) -> int:
    """Accumulated-mode ALR for every adder module of ``model``; returns how many were rescaled.

    Call after the gradients are complete (all micro-batches, DDP all-reduce, AMP unscale) and
    before ``optimizer.step()``, e.g. in Lightning's ``on_before_optimizer_step``.
    """
    return sum(bool(m.apply_alr()) for m in _adder_modules(model))


def set_adder_p(model: nn.Module, p: float) -> int:
    """Set the lp exponent of every module with a ``p`` attribute that supports ALR (adder ops)."""
    n = 0
    for m in _adder_modules(model):
        if hasattr(m, "p"):
            m.p = p
            n += 1
    return n


def linear_p_schedule(progress: float, p_start: float = 2.0, p_end: float = 1.0, anneal_fraction: float = 1.0) -> float:
    """p for a training ``progress`` in [0, 1] (epoch / epochs, or step / steps).

    Linear from ``p_start`` to ``p_end`` over the first ``anneal_fraction`` of training, then
    ``p_end`` (extended paper: "p is linearly reduced from 2 to 1", issue #58; per epoch or per
    step both work per the maintainer; the fraction is unknown, hence the parameter).
    """
    if not 0.0 < anneal_fraction <= 1.0:
        raise ValueError(f"anneal_fraction must be in (0, 1], got {anneal_fraction!r}")
    t = min(max(float(progress) / anneal_fraction, 0.0), 1.0)
    return p_start + (p_end - p_start) * t


if __name__ == "__main__":  # python -m supernets.ops.adder --build  (same as ..._adder_native)
    import sys

    raise SystemExit(_adder_native.main(sys.argv[1:]))
