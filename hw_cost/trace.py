"""Tracing: one real forward pass with hooks turns an ``nn.Module`` into workload dicts.

The only module of hw_cost that imports torch (lazily, from ``estimate``). Rules:

* a module that defines ``hw_workload(input_shape, output_shape)`` is costed by it, and its
  children are not hooked (no double counting);
* standard torch layers are costed by the table below;
* ``nn.MultiheadAttention`` is costed as projections + two activation x activation matmuls + softmax;
* functional calls made in a container's own ``forward`` (residual adds, ``F.relu``, ``torch.matmul``,
  ``F.softmax``, ``F.interpolate``, ``F.conv2d`` ...) are caught with a ``TorchFunctionMode``;
* any other leaf module that runs is reported by qualified name in ``uncosted`` (never zero silently);
  ``Dropout``/``Identity``/``Flatten`` cost nothing and are not "uncosted".
* A norm or cheap activation whose input is the output of the layer just before it (conv -> BN ->
  ReLU) is marked ``fused``: its arithmetic is charged, but it runs in that layer's output stage.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_ZERO = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TCONV = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d,
         nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm)
_CHEAP_ACT = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.Threshold)
_FUNC_ACT = (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.ELU, nn.SELU,
             nn.CELU, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_APOOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_UPS = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
_SHUF = (nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)
_SOFTMAX = (nn.Softmax, nn.LogSoftmax, nn.Softmax2d, nn.Softmin)
_KNOWN = _ZERO + _CONV + _TCONV + (nn.Linear, nn.Bilinear) + _NORM + _CHEAP_ACT + _FUNC_ACT + _POOL + _APOOL + _UPS + _SHUF + _SOFTMAX
_PRODUCERS = {"conv", "linear", "dwconv", "adder_conv", "winograd_adder", "binary_conv", "transposed_conv", "matmul", "norm"}


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(x, dict):
        for v in x.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _bits(m: nn.Module, default_bits: int | None) -> tuple[int, int]:
    """Operand widths of a standard layer: its own ``w_bits``/``a_bits``/``bits`` if set, else default."""
    d = 32 if default_bits is None else int(default_bits)
    b = getattr(m, "bits", None)
    w = getattr(m, "w_bits", b if isinstance(b, int) else d)
    a = getattr(m, "a_bits", b if isinstance(b, int) else d)
    return (int(w) if isinstance(w, int) else d), (int(a) if isinstance(a, int) else d)


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def _standard_workload(m: nn.Module, x: torch.Tensor, y: torch.Tensor, default_bits: int | None) -> list[dict] | None:
    """Workload dicts of a known torch layer (None: zero-cost layer)."""
    if isinstance(m, _ZERO):
        return None
    wb, ab = _bits(m, default_bits)
    ie, oe = x.numel(), y.numel()
    base = dict(w_bits=wb, a_bits=ab, in_elems=ie, out_elems=oe)
    if isinstance(m, _CONV):
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        k = math.prod(m.kernel_size)
        pix = y.shape[0] * math.prod(y.shape[2:])
        op = "dwconv" if (g == cin and g > 1 and cout % cin == 0) else "conv"
        return [dict(op=op, ops=pix * cout * (cin // g) * k, params=_nparams(m), in_channels=cin if op == "dwconv" else cin // g,
                     out_channels=cout, kernel=k, out_pixels=pix, **base)]
    if isinstance(m, _TCONV):
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        k = math.prod(m.kernel_size)
        ipix = x.shape[0] * math.prod(x.shape[2:])   # effective MACs: every input pixel x every tap, no inserted zeros
        return [dict(op="transposed_conv", ops=ipix * (cout // g) * cin * k, params=_nparams(m), in_channels=cin // g,
                     out_channels=cout, kernel=k, out_pixels=ipix, **base)]
    if isinstance(m, nn.Linear):
        rows = x.numel() // m.in_features
        return [dict(op="linear", ops=rows * m.in_features * m.out_features, params=_nparams(m), in_channels=m.in_features,
                     out_channels=m.out_features, kernel=1, out_pixels=rows, **base)]
    if isinstance(m, nn.Bilinear):
        rows = y.numel() // m.out_features
        return [dict(op="linear", ops=rows * m.in1_features * m.in2_features * m.out_features, params=_nparams(m), **base)]
    if isinstance(m, _NORM):
        return [dict(op="norm", ops=ie, params=_nparams(m), **base)]
    if isinstance(m, _CHEAP_ACT):
        return [dict(op="eltwise", ops=ie, params=_nparams(m), **base)]
    if isinstance(m, _FUNC_ACT):
        return [dict(op="gelu", ops=ie, **base)]
    if isinstance(m, _POOL):
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (y.dim() - 2)
        return [dict(op="pool", ops=oe * math.prod(ks), **base)]
    if isinstance(m, _APOOL):
        return [dict(op="pool", ops=max(ie, oe), **base)]
    if isinstance(m, _UPS):
        return [dict(op="upsample", ops=0, **base)]
    if isinstance(m, _SHUF):
        return [dict(op="pixel_shuffle", ops=0, **base)]
    if isinstance(m, _SOFTMAX):
        return [dict(op="softmax", ops=ie, **base)]
    raise AssertionError(type(m))


def _mha_workload(m: nn.MultiheadAttention, args: tuple, y: Any, default_bits: int | None) -> list[dict]:
    """In-projection (3 linears), Q K^T, softmax, A V and out-projection of ``nn.MultiheadAttention``."""
    q = args[0]
    k = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else q
    wb, ab = _bits(m, default_bits)
    E, H = m.embed_dim, m.num_heads
    if m.batch_first:
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
    else:
        lq, n, lk = q.shape[0], q.shape[1], k.shape[0]
    kd, vd = m.kdim, m.vdim
    dh = E // H
    rows_q, rows_k = n * lq, n * lk
    b = dict(w_bits=wb, a_bits=ab)
    return [
        dict(name="q_proj", op="linear", ops=rows_q * E * E, params=E * E + E, in_elems=rows_q * E, out_elems=rows_q * E,
             in_channels=E, out_channels=E, kernel=1, out_pixels=rows_q, **b),
        dict(name="kv_proj", op="linear", ops=rows_k * (kd + vd) * E, params=(kd + vd) * E + 2 * E,
             in_elems=rows_k * (kd + vd), out_elems=2 * rows_k * E, in_channels=kd, out_channels=2 * E, kernel=1,
             out_pixels=rows_k, **b),
        dict(name="qk", op="matmul", ops=n * H * lq * lk * dh, in_elems=(rows_q + rows_k) * E, out_elems=n * H * lq * lk,
             in_channels=dh, out_channels=lk, kernel=1, out_pixels=n * H * lq, w_bits=ab, a_bits=ab),
        dict(name="softmax", op="softmax", ops=n * H * lq * lk, in_elems=n * H * lq * lk, out_elems=n * H * lq * lk, **b),
        dict(name="av", op="matmul", ops=n * H * lq * lk * dh, in_elems=n * H * lq * lk + rows_k * E, out_elems=rows_q * E,
             in_channels=lk, out_channels=dh, kernel=1, out_pixels=n * H * lq, w_bits=ab, a_bits=ab),
        dict(name="out_proj", op="linear", ops=rows_q * E * E, params=E * E + E, in_elems=rows_q * E, out_elems=rows_q * E,
             in_channels=E, out_channels=E, kernel=1, out_pixels=rows_q, **b),
    ]


class _Tracer(TorchFunctionMode):
    """Hooks + a function mode that records one forward pass as workload dicts."""

    def __init__(self, model: nn.Module, default_bits: int | None) -> None:
        super().__init__()
        self.model = model
        self.default_bits = default_bits
        self.workloads: list[dict] = []
        self.uncosted: list[str] = []
        self.depth = 0                     # > 0 while inside a costed (hooked) module
        self.stack: list[str] = [""]       # enclosing module names (for functional rows)
        self.fn_count: dict[str, int] = {}
        self.last_out: torch.Tensor | None = None
        self.last_op: str | None = None
        self.handles: list[Any] = []
        self._fn_table = self._functional_table()

    # ---- module hooks ----
    def install(self) -> None:
        costed_roots: list[str] = []
        for name, m in self.model.named_modules():
            if any(name.startswith(r + ".") for r in costed_roots):
                continue  # inside a module that costs itself
            own = callable(getattr(m, "hw_workload", None))
            leaf = len(list(m.children())) == 0
            if own or isinstance(m, nn.MultiheadAttention) or (leaf and name != "") or (leaf and m is self.model):
                costed_roots.append(name)
                self.handles.append(m.register_forward_pre_hook(self._pre_costed))
                self.handles.append(m.register_forward_hook(self._make_post(name or type(m).__name__, m, own)))
            else:
                self.handles.append(m.register_forward_pre_hook(self._make_enter(name)))
                self.handles.append(m.register_forward_hook(self._exit))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _make_enter(self, name: str):
        def hook(mod, args):
            self.stack.append(name)
        return hook

    def _exit(self, mod, args, out):
        if len(self.stack) > 1:
            self.stack.pop()

    def _pre_costed(self, mod, args):
        self.depth += 1

    def _make_post(self, name: str, m: nn.Module, own: bool):
        def hook(mod, args, out):
            self.depth -= 1
            if self.depth > 0:
                return  # a costed module called inside another costed module's forward
            self.depth += 1  # torch calls made while costing (e.g. inside hw_workload) are not the model's
            try:
                self._cost_module(name, m, own, args, out)
            finally:
                self.depth -= 1
        return hook

    def _cost_module(self, name: str, m: nn.Module, own: bool, args: tuple, out: Any) -> None:
        if True:
            x = _first_tensor(args)
            y = _first_tensor(out)
            if y is None or x is None:
                if own:
                    raise ValueError(f"module '{name}' defines hw_workload but its forward had no tensor input/output")
                return
            if own:
                wl = m.hw_workload(tuple(x.shape), tuple(y.shape))
                items = [wl] if isinstance(wl, dict) else list(wl)
                for i, d in enumerate(items):
                    if not isinstance(d, dict):
                        raise TypeError(f"{type(m).__name__}.hw_workload (module '{name}') must return a dict or a list of dicts, got {type(d).__name__}")
                    d = dict(d)
                    sub = d.get("name")
                    d["name"] = f"{name}.{sub}" if sub else (name if len(items) == 1 else f"{name}.{i}")
                    self.workloads.append(d)
                self._note(x, y, items[-1].get("op") if items else None)
            elif isinstance(m, nn.MultiheadAttention):
                for d in _mha_workload(m, args, out, self.default_bits):
                    d["name"] = f"{name}.{d['name']}"
                    self.workloads.append(d)
                self._note(x, y, "linear")
            elif isinstance(m, _KNOWN):
                wls = _standard_workload(m, x, y, self.default_bits)
                if wls is None:
                    if self.last_out is not None and x is self.last_out:
                        self.last_out = y  # Identity/Dropout keep the producer chain
                    return
                for d in wls:
                    d["name"] = name
                    self._fuse(d, x)
                    self.workloads.append(d)
                self._note(x, y, wls[-1]["op"])
            else:
                if name not in self.uncosted:
                    self.uncosted.append(name)
                self.last_out, self.last_op = None, None

    def _fuse(self, d: dict, x: torch.Tensor) -> None:
        if d["op"] in ("norm", "eltwise") and self.last_out is not None and x is self.last_out and self.last_op in _PRODUCERS:
            d["fused"] = True

    def _note(self, x: torch.Tensor, y: torch.Tensor, op: str | None) -> None:
        self.last_out, self.last_op = y, op

    # ---- functional calls in containers' own forward code ----
    def _functional_table(self) -> dict[Any, str]:
        T = torch.Tensor
        t: dict[Any, str] = {}
        for f in (torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__, torch.sub, T.sub, T.__sub__, T.__rsub__,
                  T.__isub__, torch.mul, T.mul, T.mul_, T.__mul__, T.__rmul__, T.__imul__, torch.maximum, torch.minimum,
                  torch.clamp, T.clamp, F.relu, torch.relu, T.relu, F.relu_, torch.relu_, T.relu_, F.relu6, F.leaky_relu,
                  F.hardtanh, torch.cat):
            t[f] = "eltwise"
        for f in (F.gelu, F.silu, torch.sigmoid, T.sigmoid, F.sigmoid, torch.tanh, T.tanh, F.hardswish, F.hardsigmoid,
                  F.mish, F.elu, T.exp, torch.exp):
            t[f] = "gelu"
        for f in (F.softmax, torch.softmax, T.softmax, F.log_softmax):
            t[f] = "softmax"
        for f in (F.layer_norm, F.batch_norm, F.group_norm, F.instance_norm):
            t[f] = "norm"
        for f in (F.avg_pool2d, F.max_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool1d, F.max_pool1d,
                  torch.mean, T.mean, torch.sum, T.sum, torch.amax, T.amax):
            t[f] = "pool"
        for f in (torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm):
            t[f] = "matmul"
        t[F.interpolate] = "upsample"
        t[F.pixel_shuffle] = "pixel_shuffle"
        t[F.pixel_unshuffle] = "pixel_shuffle"
        t[F.conv2d] = "conv"
        t[F.conv1d] = "conv"
        t[F.linear] = "linear"
        t[F.scaled_dot_product_attention] = "sdpa"
        return t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            op = self._fn_table.get(func)
            if op is not None:
                try:
                    self._record_fn(op, func, args, kwargs, out)
                except Exception as exc:  # never let costing break the model's forward
                    self.uncosted.append(f"{self.stack[-1] or '<model>'}.{getattr(func, '__name__', 'fn')} ({exc})")
        return out

    def _record_fn(self, op: str, func, args, kwargs, out) -> None:
        y = _first_tensor(out)
        tens = [a for a in args if isinstance(a, torch.Tensor)]
        if not tens and isinstance(args[0] if args else None, (list, tuple)):
            tens = [a for a in args[0] if isinstance(a, torch.Tensor)]
        if y is None or not tens:
            return
        x = tens[0]
        fname = getattr(func, "__name__", "fn").strip("_")
        base_name = f"{self.stack[-1]}.{fname}" if self.stack[-1] else fname
        i = self.fn_count.get(base_name, 0)
        self.fn_count[base_name] = i + 1
        name = base_name if i == 0 else f"{base_name}_{i}"
        d0 = 32 if self.default_bits is None else int(self.default_bits)
        ie = sum(t.numel() for t in tens)
        b = dict(w_bits=d0, a_bits=d0, in_elems=ie, out_elems=y.numel())
        if op == "matmul":
            a2 = tens[0]
            b2 = tens[1] if len(tens) > 1 else tens[0]
            kdim = a2.shape[-1] if a2.dim() > 0 else 1
            wl = [dict(op="matmul", ops=y.numel() * kdim, in_channels=kdim, out_channels=b2.shape[-1] if b2.dim() > 1 else 1,
                       kernel=1, out_pixels=y.numel() // max(b2.shape[-1] if b2.dim() > 1 else 1, 1), **b)]
        elif op == "conv":
            w = tens[1]
            groups = int(args[6]) if len(args) > 6 else int(kwargs.get("groups", 1))
            k = math.prod(w.shape[2:])
            pix = y.shape[0] * math.prod(y.shape[2:])
            cout, cin_g = w.shape[0], w.shape[1]
            wl = [dict(op="conv", ops=pix * cout * cin_g * k, params=w.numel(), in_channels=cin_g, out_channels=cout,
                       kernel=k, out_pixels=pix, **b)]
            wl[0]["in_elems"] = x.numel()
        elif op == "linear":
            w = tens[1]
            rows = x.numel() // w.shape[-1]
            wl = [dict(op="linear", ops=rows * w.numel(), params=w.numel(), in_channels=w.shape[-1], out_channels=w.shape[0],
                       kernel=1, out_pixels=rows, **b)]
            wl[0]["in_elems"] = x.numel()
        elif op == "sdpa":
            q, k = tens[0], tens[1]
            lq, lk, dh = q.shape[-2], k.shape[-2], q.shape[-1]
            nb = q.numel() // (lq * dh)
            wl = [dict(name="qk", op="matmul", ops=nb * lq * lk * dh, in_channels=dh, out_channels=lk, kernel=1, out_pixels=nb * lq, **b),
                  dict(name="softmax", op="softmax", ops=nb * lq * lk, w_bits=d0, a_bits=d0, in_elems=nb * lq * lk, out_elems=nb * lq * lk),
                  dict(name="av", op="matmul", ops=nb * lq * lk * dh, in_channels=lk, out_channels=dh, kernel=1, out_pixels=nb * lq, **b)]
        elif op in ("upsample", "pixel_shuffle"):
            wl = [dict(op=op, ops=0, **b)]
        elif op == "eltwise" and fname == "cat":
            wl = [dict(op="pixel_shuffle", ops=0, **b)]  # concatenation: data movement only
        else:
            wl = [dict(op=op, ops=max(ie, y.numel()), **b)]
        for d in wl:
            sub = d.pop("name", None)
            d["name"] = f"{name}.{sub}" if sub else name
            self._fuse(d, x)
            self.workloads.append(d)
        self._note(x, y, wl[-1]["op"])


def trace_workloads(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, default_bits: int | None = None,
                    seed: int = 0) -> tuple[list[dict], list[str]]:
    """Run ``model`` once on random input of ``input_shape`` (batch included) and return
    (workload dicts, names of uncosted modules). The model's train/eval mode is restored."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    if isinstance(input_shape, torch.Tensor):
        x = input_shape.to(dev)
    else:
        shape = tuple(int(v) for v in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be positive ints with the batch first, got {tuple(input_shape)}")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=g, dtype=dtype).to(dev)
    tracer = _Tracer(model, default_bits)
    was_training = model.training
    model.eval()
    tracer.install()
    try:
        with torch.no_grad(), tracer:
            model(x)
    finally:
        tracer.remove()
        model.train(was_training)
    return tracer.workloads, tracer.uncosted
