"""Tracing: one real forward pass turns an ``nn.Module`` into workload dicts (``hw_cost.trace_workloads``).

The only module of hw_cost that imports torch (lazily, from ``estimate``). Rules:

* a module that defines ``hw_workload(input_shape, output_shape)`` is costed by it, and its
  children are not visited (no double counting);
* standard torch layers are costed by the table below, and the functional form of the same layer
  (``F.relu``, ``F.conv2d``, ``F.avg_pool2d``, ``F.batch_norm``, ...) gives the same row, wherever
  it is called (a container's ``forward`` or a leaf module of your own);
* ``nn.MultiheadAttention`` is costed as projections + two activation x activation matmuls + softmax;
* a leaf module hw_cost does not know is costed by the torch calls its ``forward`` makes; one that
  makes no costed call (and is not a pure view of its input) is reported by qualified name in
  ``uncosted`` (never zero silently). ``Dropout``/``Identity``/``Flatten`` cost nothing;
* arithmetic that does nothing is free: ``x + 0`` (Python's ``sum`` starts with ``0 + x``),
  ``x - 0``, ``x * 1``, ``x / 1``, and ``x * 0`` (a constant);
* **fusion**: an element-wise op (norm, cheap activation, residual add / mul, channel shuffle,
  concatenation) with an input that is the output of the op recorded just before it is marked
  ``fused``: it runs in that op's output stage, as a real accelerator applies BN, ReLU and the
  shortcut add while the conv writes its output. Its arithmetic is charged; it gets no cycles, no
  memory traffic and no unit of its own. Fusion chains (conv -> BN -> add -> ReLU all fuse).

Speed: hooks are two global module hooks (not two per module), and the pass runs single-threaded
(torch's intra-op threads only add overhead on the tiny tensors of one traced forward).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _module_hooks
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
# ops that run in the output stage of the op just before them when they consume its output
FUSABLE = frozenset({"norm", "eltwise", "pixel_shuffle"})


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


def _bits(m: nn.Module | None, default_bits: int | None) -> tuple[int, int]:
    """Operand widths of a standard layer: its own ``w_bits``/``a_bits``/``bits`` if set, else default."""
    d = 32 if default_bits is None else int(default_bits)
    if m is None:
        return d, d
    b = getattr(m, "bits", None)
    w = getattr(m, "w_bits", b if isinstance(b, int) else d)
    a = getattr(m, "a_bits", b if isinstance(b, int) else d)
    return (int(w) if isinstance(w, int) else d), (int(a) if isinstance(a, int) else d)


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def _numel(*ts: Any) -> int:
    return sum(t.numel() for t in ts if isinstance(t, torch.Tensor))


# ---- one row per layer kind: shared by the module and the functional path ----

def conv_row(x: torch.Tensor, y: torch.Tensor, weight_shape: Sequence[int], groups: int, params: int, base: dict) -> dict:
    """Conv rows: ``dwconv`` when groups == C_in > 1 (each output channel reads one input channel)."""
    cout, cin_g = int(weight_shape[0]), int(weight_shape[1])
    cin = cin_g * groups
    k = math.prod(int(v) for v in weight_shape[2:])
    pix = y.shape[0] * math.prod(y.shape[2:])
    dw = groups == cin and groups > 1 and cout % cin == 0
    return dict(op="dwconv" if dw else "conv", ops=pix * cout * cin_g * k, params=params, in_channels=cin if dw else cin_g,
                out_channels=cout, kernel=k, out_pixels=pix, **base)


def linear_row(x: torch.Tensor, in_features: int, out_features: int, params: int, base: dict) -> dict:
    rows = x.numel() // in_features
    return dict(op="linear", ops=rows * in_features * out_features, params=params, in_channels=in_features,
                out_channels=out_features, kernel=1, out_pixels=rows, **base)


def pool_row(x: torch.Tensor, y: torch.Tensor, window: int | None, base: dict) -> dict:
    """Pooling is a window reduction: ``window`` adds / compares per output (global pooling: in / out)."""
    ie, oe = x.numel(), y.numel()
    win = int(window) if window else max(1, -(-ie // max(oe, 1)))
    return dict(op="pool", ops=oe * win, kernel=win, params=0, **base)


def _standard_workload(m: nn.Module, x: torch.Tensor, y: torch.Tensor, default_bits: int | None) -> list[dict] | None:
    """Workload dicts of a known torch layer (None: zero-cost layer)."""
    if isinstance(m, _ZERO):
        return None
    wb, ab = _bits(m, default_bits)
    ie, oe = x.numel(), y.numel()
    base = dict(w_bits=wb, a_bits=ab, in_elems=ie, out_elems=oe)
    if isinstance(m, _CONV):
        return [conv_row(x, y, m.weight.shape, m.groups, _nparams(m), base)]
    if isinstance(m, _TCONV):
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        k = math.prod(m.kernel_size)
        ipix = x.shape[0] * math.prod(x.shape[2:])   # effective MACs: every input pixel x every tap, no inserted zeros
        return [dict(op="transposed_conv", ops=ipix * (cout // g) * cin * k, params=_nparams(m), in_channels=cin // g,
                     out_channels=cout, kernel=k, out_pixels=ipix, **base)]
    if isinstance(m, nn.Linear):
        return [linear_row(x, m.in_features, m.out_features, _nparams(m), base)]
    if isinstance(m, nn.Bilinear):
        rows = y.numel() // m.out_features
        return [dict(op="linear", ops=rows * m.in1_features * m.in2_features * m.out_features, params=_nparams(m), **base)]
    if isinstance(m, _NORM):
        return [dict(op="norm", ops=ie, params=_nparams(m), **base)]
    if isinstance(m, _CHEAP_ACT):
        return [dict(op="eltwise", ops=oe, params=_nparams(m), **base)]
    if isinstance(m, _FUNC_ACT):
        return [dict(op="gelu", ops=oe, params=0, **base)]
    if isinstance(m, _POOL):
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (y.dim() - 2)
        return [pool_row(x, y, math.prod(ks), base)]
    if isinstance(m, _APOOL):
        return [pool_row(x, y, None, base)]
    if isinstance(m, _UPS):
        return [dict(op="upsample", ops=0, params=0, **base)]
    if isinstance(m, _SHUF):
        return [dict(op="pixel_shuffle", ops=0, params=0, **base)]
    if isinstance(m, _SOFTMAX):
        return [dict(op="softmax", ops=ie, params=0, **base)]
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


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _functional_table() -> dict[Any, str]:
    T = torch.Tensor
    t: dict[Any, str] = {}
    for f in (torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__, torch.sub, T.sub, T.sub_, T.__sub__, T.__rsub__,
              T.__isub__, torch.mul, T.mul, T.mul_, T.__mul__, T.__rmul__, T.__imul__, torch.div, T.div, T.div_,
              T.__truediv__, T.__itruediv__, torch.maximum, torch.minimum, torch.clamp, T.clamp, T.clamp_, F.relu,
              torch.relu, T.relu, F.relu_, torch.relu_, T.relu_, F.relu6, F.leaky_relu, F.hardtanh):
        t[f] = "eltwise"
    for f in (F.gelu, F.silu, torch.sigmoid, T.sigmoid, F.sigmoid, torch.tanh, T.tanh, F.hardswish, F.hardsigmoid,
              F.mish, F.elu, T.exp, torch.exp):
        t[f] = "gelu"
    for f in (F.softmax, torch.softmax, T.softmax, F.log_softmax):
        t[f] = "softmax"
    for f in (F.layer_norm, F.batch_norm, F.group_norm, F.instance_norm):
        t[f] = "norm"
    for f in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d, F.max_pool3d):
        t[f] = "pool"
    for f in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
              torch.mean, T.mean, torch.sum, T.sum, torch.amax, T.amax):
        t[f] = "gpool"
    for f in (torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm):
        t[f] = "matmul"
    t[F.interpolate] = "upsample"
    for f in (F.pixel_shuffle, F.pixel_unshuffle, torch.channel_shuffle, F.channel_shuffle, torch.cat, torch.concat):
        t[f] = "pixel_shuffle"  # data movement only (a permutation or a placement)
    t[F.conv1d] = t[F.conv2d] = t[F.conv3d] = "conv"
    t[F.linear] = "linear"
    t[F.scaled_dot_product_attention] = "sdpa"
    return t


_FN_TABLE: dict[Any, str] | None = None
_NEUTRAL = {"add": 0, "radd": 0, "iadd": 0, "sub": 0, "isub": 0, "mul": 1, "rmul": 1, "imul": 1, "truediv": 1,
            "itruediv": 1, "div": 1, "div_": 1, "add_": 0, "sub_": 0, "mul_": 1}
_ZERO_MUL = {"mul", "rmul", "imul", "mul_"}

# roles of the modules of a traced model
_COSTED, _CONTAINER, _LEAF = 0, 1, 2


class _Tracer(TorchFunctionMode):
    """Global module hooks + a function mode that record one forward pass as workload dicts."""

    def __init__(self, model: nn.Module, default_bits: int | None) -> None:
        super().__init__()
        global _FN_TABLE
        if _FN_TABLE is None:
            _FN_TABLE = _functional_table()
        self._fn_table = _FN_TABLE
        self.model = model
        self.default_bits = default_bits
        self.workloads: list[dict] = []
        self.uncosted: list[str] = []
        self.depth = 0                     # > 0 while inside a costed module
        self.stack: list[str] = [""]       # enclosing module names (for functional rows)
        self.frames: list[Any] = []
        self.fn_count: dict[str, int] = {}
        self.last_out: torch.Tensor | None = None
        self.last_op: str | None = None
        self.roles: dict[int, tuple[int, str, nn.Module, bool]] = {}
        self.handles: list[Any] = []

    # ---- module roles (one walk, no per-module hooks) ----
    def _walk(self, m: nn.Module, name: str) -> None:
        if id(m) in self.roles:
            return  # shared module: first name wins
        own = callable(getattr(m, "hw_workload", None))
        leaf = not m._modules
        display = name or type(m).__name__
        if own or isinstance(m, nn.MultiheadAttention) or (leaf and isinstance(m, _KNOWN)):
            self.roles[id(m)] = (_COSTED, display, m, own)
            return  # its children are costed by it
        self.roles[id(m)] = (_LEAF if leaf else _CONTAINER, display if leaf else name, m, False)
        for cname, child in m._modules.items():
            if child is not None:
                self._walk(child, f"{name}.{cname}" if name else cname)

    def install(self) -> None:
        self._walk(self.model, "")
        self.handles = [_module_hooks.register_module_forward_pre_hook(self._pre),
                        _module_hooks.register_module_forward_hook(self._post)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _pre(self, mod: nn.Module, args: tuple) -> None:
        role = self.roles.get(id(mod))
        if role is None or role[2] is not mod:
            return None
        if self.depth > 0:
            self.frames.append(None)       # a module called inside a costed module's forward
            return None
        kind, name = role[0], role[1]
        if kind == _COSTED:
            self.depth += 1
        else:
            self.stack.append(name)
        self.frames.append((kind, name, len(self.workloads), _first_tensor(args)))
        return None

    def _post(self, mod: nn.Module, args: tuple, out: Any) -> None:
        role = self.roles.get(id(mod))
        if role is None or role[2] is not mod or not self.frames:
            return None
        frame = self.frames.pop()
        if frame is None:
            return None
        kind, name, n0, x = frame
        if kind == _COSTED:
            self.depth -= 1
            self.depth += 1  # torch calls made while costing (e.g. inside hw_workload) are not the model's
            try:
                self._cost_module(name, mod, role[3], args, out)
            finally:
                self.depth -= 1
            return None
        if len(self.stack) > 1:
            self.stack.pop()
        if kind == _LEAF and len(self.workloads) == n0:
            y = _first_tensor(out)
            passthrough = y is None or x is None or y is x or (y.numel() == x.numel() and y.data_ptr() == x.data_ptr())
            if not passthrough:
                if name not in self.uncosted:
                    self.uncosted.append(name)
                self.last_out, self.last_op = None, None
            elif self.last_out is not None and x is self.last_out:
                self.last_out = y
        return None

    def _cost_module(self, name: str, m: nn.Module, own: bool, args: tuple, out: Any) -> None:
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
            self._note(y, items[-1].get("op") if items else None)
        elif isinstance(m, nn.MultiheadAttention):
            for d in _mha_workload(m, args, out, self.default_bits):
                d["name"] = f"{name}.{d['name']}"
                self.workloads.append(d)
            self._note(y, "linear")
        else:
            wls = _standard_workload(m, x, y, self.default_bits)
            if wls is None:
                if self.last_out is not None and x is self.last_out:
                    self.last_out = y  # Identity/Dropout keep the producer chain
                return
            for d in wls:
                d["name"] = name
                self._fuse(d, (x,))
                self.workloads.append(d)
            self._note(y, wls[-1]["op"])

    def _fuse(self, d: dict, inputs: Sequence[torch.Tensor]) -> None:
        if d["op"] in FUSABLE and self.last_op is not None and self.last_out is not None \
                and any(t is self.last_out for t in inputs):
            d["fused"] = True

    def _note(self, y: torch.Tensor, op: str | None) -> None:
        self.last_out, self.last_op = y, op

    # ---- functional calls ----
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
        if op == "eltwise" and len(tens) == 1 and fname in _NEUTRAL:
            scalars = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            if scalars and (scalars[0] == _NEUTRAL[fname] or (fname in _ZERO_MUL and scalars[0] == 0)):
                if self.last_out is not None and x is self.last_out:
                    self.last_out = y  # x + 0, x * 1: nothing runs; x * 0: a constant
                return
        base_name = f"{self.stack[-1]}.{fname}" if self.stack[-1] else fname
        i = self.fn_count.get(base_name, 0)
        self.fn_count[base_name] = i + 1
        name = base_name if i == 0 else f"{base_name}_{i}"
        d0 = 32 if self.default_bits is None else int(self.default_bits)
        ie, oe = x.numel(), y.numel()
        b = dict(w_bits=d0, a_bits=d0, in_elems=ie, out_elems=oe)
        if op == "matmul":
            a2 = tens[0]
            b2 = tens[1] if len(tens) > 1 else tens[0]
            kdim = a2.shape[-1] if a2.dim() > 0 else 1
            b["in_elems"] = _numel(*tens)
            wl = [dict(op="matmul", ops=y.numel() * kdim, in_channels=kdim, out_channels=b2.shape[-1] if b2.dim() > 1 else 1,
                       kernel=1, out_pixels=y.numel() // max(b2.shape[-1] if b2.dim() > 1 else 1, 1), **b)]
        elif op == "conv":
            w = _arg(args, kwargs, 1, "weight")
            bias = _arg(args, kwargs, 2, "bias")
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            wl = [conv_row(x, y, w.shape, groups, _numel(w, bias), b)]
        elif op == "linear":
            w = _arg(args, kwargs, 1, "weight")
            bias = _arg(args, kwargs, 2, "bias")
            wl = [linear_row(x, w.shape[-1], w.shape[0], _numel(w, bias), b)]
        elif op == "norm":
            if func is F.batch_norm:
                params = _numel(_arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias"))
            elif func is F.layer_norm:
                params = _numel(_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias"))
            else:
                params = _numel(kwargs.get("weight"), kwargs.get("bias"))
            wl = [dict(op="norm", ops=ie, params=params, **b)]
        elif op == "pool":
            ks = _arg(args, kwargs, 1, "kernel_size")
            ks = ks if isinstance(ks, (tuple, list)) else (ks,) * (y.dim() - 2)
            wl = [pool_row(x, y, math.prod(int(v) for v in ks), b)]
        elif op == "gpool":
            wl = [pool_row(x, y, None, b)]
        elif op == "sdpa":
            q, k = tens[0], tens[1]
            lq, lk, dh = q.shape[-2], k.shape[-2], q.shape[-1]
            nb = q.numel() // (lq * dh)
            wl = [dict(name="qk", op="matmul", ops=nb * lq * lk * dh, in_channels=dh, out_channels=lk, kernel=1, out_pixels=nb * lq, **b),
                  dict(name="softmax", op="softmax", ops=nb * lq * lk, w_bits=d0, a_bits=d0, in_elems=nb * lq * lk, out_elems=nb * lq * lk),
                  dict(name="av", op="matmul", ops=nb * lq * lk * dh, in_channels=lk, out_channels=dh, kernel=1, out_pixels=nb * lq, **b)]
        elif op in ("upsample", "pixel_shuffle"):
            b["in_elems"] = _numel(*tens)
            wl = [dict(op=op, ops=0, params=0, **b)]
        elif op == "eltwise":
            # one add / mul / compare per output element, however many operands are broadcast in
            b["in_elems"] = _numel(*tens)
            wl = [dict(op="eltwise", ops=oe, params=0, **b)]
        else:  # gelu, softmax: per element
            wl = [dict(op=op, ops=max(ie, oe), params=0, **b)]
        for d in wl:
            sub = d.pop("name", None)
            d["name"] = f"{name}.{sub}" if sub else name
            self._fuse(d, tens)
            self.workloads.append(d)
        self._note(y, wl[-1]["op"])


def trace_workloads(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, default_bits: int | None = None,
                    seed: int = 0) -> tuple[list[dict], list[str]]:
    """Run ``model`` once on random input of ``input_shape`` (N, C, H, W: batch included) and return
    (workload dicts, names of uncosted modules). The model's train/eval mode and torch's thread
    count are restored. Public as ``hw_cost.trace_workloads``; the rules are in this module's docstring."""
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
    threads = torch.get_num_threads()
    model.eval()
    tracer.install()
    try:
        torch.set_num_threads(1)
        with torch.no_grad(), tracer:
            model(x)
    finally:
        tracer.remove()
        torch.set_num_threads(threads)
        model.train(was_training)
    return tracer.workloads, tracer.uncosted
