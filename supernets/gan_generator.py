"""Builders of the ``gan-generator`` and ``gan-generator-sr`` spaces (see ``spaces.gan_generator``).

Pieces shared with the weight-sharing supernet (``supernets.gan_supernet``), which builds the same
module classes at the widest shape so ``extract`` only has to map cell prefixes:

* op modules (``SingleConvOp`` for conv3x3 / conv1x1 / dil3x3, ``ResBlockOp``, ``DWSepOp``), whose
  dense convs come from a factory (``make_dense``: ``nn.Conv2d`` / ``QuantConv2d`` /
  ``AdderConv2d`` / ``QuantAdderConv2d`` by family and bits); depthwise convs stay float convs
  (the quantised ops cannot slice grouped layers, and a depthwise conv is ~1/C of the block's work);
* cells (``Cell``): ``down`` = act(norm(op_stride2(x))), ``up`` = act(norm(op(upsample2(x)))),
  ``res`` = x + op(act(norm(x))) (pre-activation residual, so the branch ends linear as EDSR's);
* ``InstanceNorm`` (no affine, no running statistics: nothing to share or recalibrate across
  widths; pix2pix trains with batch 1, where batch norm is instance norm) or no norm (SR).

A skipped body cell is an ``nn.Identity`` in the built generator: hw_cost costs it at zero.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.gan_generator import (DEC_CELLS, ENC_CELLS, N_BODY, N_BODY_SR, N_DOWN, body_cells, channels, sr_widths,
                                  translation_widths)
from supernets.edsr import Upsampler
from supernets.ops import get_op

__all__ = [
    "NORMS", "InstanceNorm", "make_norm", "make_dense", "SingleConvOp", "ResBlockOp", "DWSepOp", "make_op_module",
    "Cell", "TranslationGenerator", "SRGenerator", "build_gan_generator", "build_gan_generator_sr", "key_of",
    "channels", "translation_widths", "sr_widths",
]

NORMS = ("instance", "none")
ADDER_ETA = 0.2  # AdderNet's adaptive learning-rate scale (official default)
Dense = Callable[[int, int, int, int, int], nn.Module]  # (in, out, kernel, stride, dilation) -> layer


def key_of(cell: str) -> str:
    """Module key of a cell label (``body.b3`` -> ``body_b3``: module names cannot hold dots)."""
    return cell.replace(".", "_")


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm without affine parameters or running statistics, over any channel count
    (torch warns when the count differs from ``num_features``; a slimmable layer's always may)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=self.eps)


def make_norm(kind: str, c: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm(c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, found {kind!r}")


def make_dense(family: str, bits: int, cin: int, cout: int, kernel: int, stride: int, dilation: int) -> nn.Module:
    """A dense conv of ``family`` (conv / adder) at ``bits`` (32 = float), padding keeping the size."""
    pad = dilation * (kernel // 2)
    if family == "conv":
        if bits >= 32:
            return nn.Conv2d(cin, cout, kernel, stride, pad, dilation, bias=False)
        return get_op("quant_conv")(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bits=bits)
    if family == "adder":
        if bits >= 32:
            return get_op("adder")(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, eta=ADDER_ETA)
        return get_op("quant_adder")(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bits=bits, eta=ADDER_ETA)
    raise ValueError(f"family: expected conv or adder, found {family!r}")


def make_depthwise(c: int, stride: int) -> nn.Module:
    return nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False)


class SingleConvOp(nn.Module):
    """conv3x3, conv1x1 or dil3x3 (3x3, dilation 2): one dense conv."""

    def __init__(self, dense: Dense, cin: int, cout: int, kernel: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = dense(cin, cout, kernel, stride, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResBlockOp(nn.Module):
    """conv3x3 (to the inner width, stride) -> norm -> ReLU -> conv3x3 (to the output width); the
    residual is the cell's (body cells); resampling cells use the two convs plainly."""

    def __init__(self, dense: Dense, cin: int, cout: int, inner: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = dense(cin, inner, 3, stride, 1)
        self.norm1 = norm(inner)
        self.act = nn.ReLU()
        self.conv2 = dense(inner, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm1(self.conv1(x))))


class DWSepOp(nn.Module):
    """1x1 (to the inner width) -> norm -> ReLU -> depthwise 3x3 (stride) -> norm -> ReLU -> 1x1."""

    def __init__(self, dense: Dense, depthwise: Callable[[int, int], nn.Module], cin: int, cout: int, inner: int,
                 stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.pw1 = dense(cin, inner, 1, 1, 1)
        self.norm1 = norm(inner)
        self.dw = depthwise(inner, stride)
        self.norm2 = norm(inner)
        self.act = nn.ReLU()
        self.pw2 = dense(inner, cout, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.pw1(x)))
        h = self.act(self.norm2(self.dw(h)))
        return self.pw2(h)


def make_op_module(op: str, dense: Dense, depthwise: Callable[[int, int], nn.Module], cin: int, cout: int, inner: int,
                   stride: int, norm: Callable[[int], nn.Module]) -> nn.Module:
    """The op module of a cell (``inner`` is used by resblock and dwsep only)."""
    if op == "conv3x3":
        return SingleConvOp(dense, cin, cout, 3, stride)
    if op == "conv1x1":
        return SingleConvOp(dense, cin, cout, 1, stride)
    if op == "dil3x3":
        return SingleConvOp(dense, cin, cout, 3, stride, dilation=2)
    if op == "resblock":
        return ResBlockOp(dense, cin, cout, inner, stride, norm)
    if op == "dwsep":
        return DWSepOp(dense, depthwise, cin, cout, inner, stride, norm)
    raise ValueError(f"op: expected one of conv3x3, conv1x1, resblock, dwsep, dil3x3, found {op!r}")


class Cell(nn.Module):
    """One searchable cell: ``mode`` is ``down``, ``up`` or ``res`` (see the module docstring).
    ``norm`` normalises the op's output (down/up) or the residual branch's input (res)."""

    MODES = ("down", "up", "res")

    def __init__(self, mode: str, op: nn.Module | None, norm: nn.Module) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"cell mode: expected one of {self.MODES}, found {mode!r}")
        self.mode = mode
        self.pre: nn.Module = nn.Upsample(scale_factor=2, mode="nearest") if mode == "up" else nn.Identity()
        if op is not None:
            self.op = op
        self.norm = norm
        self.act = nn.ReLU()

    def current_op(self) -> nn.Module:
        return self.op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self.current_op()
        if self.mode == "res":
            return x + op(self.act(self.norm(x)))
        return self.act(self.norm(op(self.pre(x))))


class TranslationGenerator(nn.Module):
    """stem -> encoder cells -> body cells -> decoder cells (+ kept U-Net skips) -> head."""

    def __init__(self, stem: nn.Module, cells: Mapping[str, nn.Module], skips: Mapping[str, nn.Module], head: nn.Module,
                 active_skips: Sequence[str]) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleDict(dict(cells))
        self.skips = nn.ModuleDict(dict(skips))
        self.head = head
        self.active_skips = set(active_skips)
        self.enc_keys = [key_of(c) for c in ENC_CELLS]
        self.body_keys = [key_of(c) for c in body_cells(N_BODY)]
        self.dec_keys = [key_of(c) for c in DEC_CELLS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        feats = [h]
        for key in self.enc_keys:
            h = self.cells[key](h)
            feats.append(h)
        for key in self.body_keys:
            h = self.cells[key](h)
        for level, key in enumerate(self.dec_keys):
            h = self.cells[key](h)
            skip = f"skip{level + 1}"
            if skip in self.active_skips:
                h = h + self.skips[skip](feats[N_DOWN - 1 - level])
        return self.head(h)


class SRGenerator(nn.Module):
    """EDSR layout: head conv -> body cells -> body conv + global skip -> upsampler -> tail conv."""

    def __init__(self, head: nn.Module, cells: Mapping[str, nn.Module], body_conv: nn.Module, upsample: nn.Module,
                 tail: nn.Module, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)
        self.head = head
        self.cells = nn.ModuleDict(dict(cells))
        self.body_conv = body_conv
        self.upsample = upsample
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        r = h
        for cell in self.cells.values():
            r = cell(r)
        return self.tail(self.upsample(h + self.body_conv(r)))


def _kept(arch: Mapping[str, Any], cell: str) -> bool:
    return bool(arch.get(f"{cell}.keep", True))


def _dense_of(arch: Mapping[str, Any], cell: str) -> Dense:
    family, bits = str(arch[f"{cell}.family"]), int(arch[f"{cell}.bits"])

    def dense(cin: int, cout: int, kernel: int, stride: int, dilation: int) -> nn.Module:
        return make_dense(family, bits, cin, cout, kernel, stride, dilation)

    return dense


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
    return tuple(int(v) for v in input_shape)  # type: ignore[return-value]


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {', '.join(NORMS)}, found {norm!r}")
    return norm


def build_gan_generator(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (3, 32, 32), base_width: int = 16,
                        norm: str = "instance", out_channels: int | None = None, **_: Any) -> nn.Module:
    """Build from a validated ``gan-generator`` architecture. The input's height and width must be
    multiples of 4 (two stride-2 cells and two upsamplings)."""
    c_in, h, w = _check_shape(input_shape)
    if h % 2 ** N_DOWN or w % 2 ** N_DOWN:
        raise ValueError(f"input_shape: height and width must be multiples of {2 ** N_DOWN}, found {(h, w)}")
    norm = _check_norm(norm)
    c_out = c_in if out_channels is None else int(out_channels)
    widths = translation_widths(arch, int(base_width))

    def norm_of(c: int) -> nn.Module:
        return make_norm(norm, c)

    bias = norm == "none"
    stem = nn.Sequential(nn.Conv2d(c_in, widths["enc.stem"], 7, 1, 3, bias=bias), norm_of(widths["enc.stem"]), nn.ReLU())
    cells: dict[str, nn.Module] = {}
    prev = widths["enc.stem"]
    for cell in ENC_CELLS:
        op = make_op_module(arch[f"{cell}.op"], _dense_of(arch, cell), make_depthwise, prev, widths[cell], widths[cell], 2, norm_of)
        cells[key_of(cell)] = Cell("down", op, norm_of(widths[cell]))
        prev = widths[cell]
    trunk = widths["trunk"]
    for cell in body_cells(N_BODY):
        if not _kept(arch, cell):
            cells[key_of(cell)] = nn.Identity()
            continue
        inner = widths.get(cell, trunk)
        op = make_op_module(arch[f"{cell}.op"], _dense_of(arch, cell), make_depthwise, trunk, trunk, inner, 1, norm_of)
        cells[key_of(cell)] = Cell("res", op, norm_of(trunk))
    prev = trunk
    for cell in DEC_CELLS:
        op = make_op_module(arch[f"{cell}.op"], _dense_of(arch, cell), make_depthwise, prev, widths[cell], widths[cell], 1, norm_of)
        cells[key_of(cell)] = Cell("up", op, norm_of(widths[cell]))
        prev = widths[cell]
    skips: dict[str, nn.Module] = {}
    sources = [widths["enc.stem"], *(widths[c] for c in ENC_CELLS)]
    for level, cell in enumerate(DEC_CELLS):
        name = f"skip{level + 1}"
        if arch[f"unet.{name}"]:
            skips[name] = nn.Conv2d(sources[N_DOWN - 1 - level], widths[cell], 1, bias=False)
    head = nn.Sequential(nn.Conv2d(prev, c_out, 7, 1, 3, bias=True), nn.Sigmoid())
    return TranslationGenerator(stem, cells, skips, head, list(skips))


def build_gan_generator_sr(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (3, 24, 24), scale: int | None = None,
                           base_width: int = 32, norm: str = "none", out_channels: int | None = None, **_: Any) -> nn.Module:
    """Build from a validated ``gan-generator-sr`` architecture. ``scale``: the data's upscaling
    factor, which must equal ``sr.scale``."""
    c_in = _check_shape(input_shape)[0]
    s = int(arch["sr.scale"])
    if scale is not None and int(scale) != s:
        raise ValueError(f"sr.scale: the data is x{int(scale)} but the architecture upscales x{s}; "
                         f"fix sr.scale={int(scale)} (or set the data's scale to {s})")
    norm = _check_norm(norm)
    c_out = c_in if out_channels is None else int(out_channels)
    widths = sr_widths(arch, int(base_width))
    trunk = widths["trunk"]

    def norm_of(c: int) -> nn.Module:
        return make_norm(norm, c)

    cells: dict[str, nn.Module] = {}
    for cell in body_cells(N_BODY_SR):
        if not _kept(arch, cell):
            cells[key_of(cell)] = nn.Identity()
            continue
        op = make_op_module(arch[f"{cell}.op"], _dense_of(arch, cell), make_depthwise, trunk, trunk, widths.get(cell, trunk), 1, norm_of)
        cells[key_of(cell)] = Cell("res", op, norm_of(trunk))
    return SRGenerator(nn.Conv2d(c_in, trunk, 3, 1, 1), cells, nn.Conv2d(trunk, trunk, 3, 1, 1), Upsampler(s, trunk),
                       nn.Conv2d(trunk, c_out, 3, 1, 1), s)


