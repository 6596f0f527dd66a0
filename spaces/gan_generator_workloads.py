"""Config-level workloads of ``gan-generator`` and ``gan-generator-sr``: the cost model's rows without torch.

Contract (as ``spaces.addernet_resnet_workloads``, whose row helpers this reuses): for every
architecture, ``gan_generator_workloads(arch, (N, C, H, W), base_width=..., norm=...,
out_channels=..., default_bits=B)`` equals, row for row, what ``hw_cost.trace.trace_workloads``
records for ``supernets.build("gan-generator", arch, input_shape=(C, H, W), ...)``; the parity test
is ``tests/hw_cost/test_space_contract.py`` (every registered space). It mirrors
``supernets/gan_generator.py`` (cells, ops, widths from ``spaces.gan_generator``), the ops'
``hw_workload`` (adder, quant_conv, quant_adder) and the tracer's rows for standard layers
(conv with bias in ``params``, depthwise ``dwconv``, instance norm without parameters, ReLU,
nearest upsampling, pixel shuffle, sigmoid) including the ``fused`` rule: a norm, ReLU, add or
pixel shuffle that consumes the output of the op recorded just before it. A skipped cell is an
identity: no rows. Each cell's rows are written once per distinct set of numbers as ``Rows``
(``spaces.workload_rows``, names relative to the cell) and handed over as ``RowBlock``s under the
cell's prefix, so cells equal but for their place share one set of rows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from spaces.addernet_resnet_workloads import _conv_workload, _Rows
from spaces.gan_generator import (DEC_CELLS, ENC_CELLS, N_BODY, N_BODY_SR, body_cells, sr_widths, translation_widths)
from spaces.workload_rows import RowBlock, Rows
from spaces.workload_shapes import check_shape, out_size


class _GanRows(_Rows):
    """Rows of the generator's layers in forward order, tracking the current feature map."""

    __slots__ = ("n",)

    def __init__(self, n: int, default_bits: int | None) -> None:
        super().__init__(default_bits)
        self.n = n

    def conv(self, name: str, cin: int, cout: int, h: int, w: int, k: int, stride: int = 1, *, family: str = "conv",
             bits: int = 32, bias: bool = False, depthwise: bool = False) -> tuple[int, int]:
        ho, wo = out_size(h, k, stride), out_size(w, k, stride)
        n, kk = self.n, k * k
        pix, ie, oe = n * ho * wo, n * cin * h * w, n * cout * ho * wo
        if depthwise:
            self.std({"op": "dwconv", "ops": pix * cout * kk, "params": cout * kk, "in_channels": cin, "out_channels": cout,
                      "kernel": kk, "out_pixels": pix, "in_elems": ie, "out_elems": oe, "name": name})
        elif family == "conv" and bits >= 32:
            self.std({"op": "conv", "ops": pix * cout * cin * kk, "params": cout * cin * kk + (cout if bias else 0),
                      "in_channels": cin, "out_channels": cout, "kernel": kk, "out_pixels": pix, "in_elems": ie,
                      "out_elems": oe, "name": name})
        elif family == "conv":
            self.rows.append(_conv_workload("conv", n, cin, cout, kk, pix, ie, oe, bits, bits, name, quant_granularity="per_tensor"))
        elif bits >= 32:
            self.rows.append({"op": "adder_conv", "ops": pix * cout * cin * kk, "w_bits": 32, "a_bits": 32, "params": cout * cin * kk,
                              "in_elems": ie, "out_elems": oe, "in_channels": cin, "out_channels": cout, "kernel": kk,
                              "out_pixels": pix, "name": name})
        else:
            self.rows.append(_conv_workload("adder_conv", n, cin, cout, kk, pix, ie, oe, bits, bits, name, shared_scale=True))
        return ho, wo

    def elt(self, name: str, op: str, elems: int, in_elems: int | None = None, fused: bool = True, ops: int | None = None) -> None:
        d = {"op": op, "ops": elems if ops is None else ops, "params": 0, "in_elems": elems if in_elems is None else in_elems, "out_elems": elems, "name": name}
        if fused:
            d["fused"] = True
        self.std(d)


def _op_rows(r: _GanRows, prefix: str, op: str, family: str, bits: int, cin: int, cout: int, inner: int, h: int, w: int,
             stride: int, norm: bool) -> tuple[int, int]:
    """The rows of ``make_op_module(op, ...)``; returns the output size."""
    n = r.n
    if op in ("conv3x3", "conv1x1", "dil3x3"):
        return r.conv(f"{prefix}.conv", cin, cout, h, w, 1 if op == "conv1x1" else 3, stride, family=family, bits=bits)
    if op == "resblock":
        ho, wo = r.conv(f"{prefix}.conv1", cin, inner, h, w, 3, stride, family=family, bits=bits)
        if norm:
            r.elt(f"{prefix}.norm1", "norm", n * inner * ho * wo)
        r.elt(f"{prefix}.act", "eltwise", n * inner * ho * wo)
        return r.conv(f"{prefix}.conv2", inner, cout, ho, wo, 3, 1, family=family, bits=bits)
    if op == "dwsep":
        r.conv(f"{prefix}.pw1", cin, inner, h, w, 1, 1, family=family, bits=bits)
        if norm:
            r.elt(f"{prefix}.norm1", "norm", n * inner * h * w)
        r.elt(f"{prefix}.act", "eltwise", n * inner * h * w)
        ho, wo = r.conv(f"{prefix}.dw", inner, inner, h, w, 3, stride, depthwise=True)
        if norm:
            r.elt(f"{prefix}.norm2", "norm", n * inner * ho * wo)
        r.elt(f"{prefix}.act", "eltwise", n * inner * ho * wo)
        return r.conv(f"{prefix}.pw2", inner, cout, ho, wo, 1, 1, family=family, bits=bits)
    raise ValueError(f"op: expected one of conv3x3, conv1x1, resblock, dwsep, dil3x3, found {op!r}")


def _frozen(r: _GanRows) -> Rows:
    return Rows.from_dicts(r.rows)


_CACHE = 1 << 14


@lru_cache(maxsize=_CACHE)
def _res_cell(op: str, family: str, bits: int, trunk: int, inner: int, n: int, h: int, w: int, norm: bool,
              dbits: int | None) -> Rows:
    """``x + op(act(norm(x)))`` (names relative to the cell's ``cells.<cell>.``)."""
    r = _GanRows(n, dbits)
    e = n * trunk * h * w
    if norm:
        r.elt("norm", "norm", e)
    r.elt("act", "eltwise", e)
    _op_rows(r, "op", op, family, bits, trunk, trunk, inner, h, w, 1, norm)
    r.elt("add", "eltwise", e, 2 * e)
    return _frozen(r)


@lru_cache(maxsize=_CACHE)
def _stem(n: int, c: int, stem: int, h: int, w: int, norm: bool, dbits: int | None) -> RowBlock:
    r = _GanRows(n, dbits)
    r.conv("stem.0", c, stem, h, w, 7, bias=not norm)
    if norm:
        r.elt("stem.1", "norm", n * stem * h * w)
    r.elt("stem.2", "eltwise", n * stem * h * w)
    return RowBlock(_frozen(r))


@lru_cache(maxsize=_CACHE)
def _enc_cell(op: str, family: str, bits: int, prev: int, out: int, n: int, h: int, w: int, norm: bool,
              dbits: int | None) -> Rows:
    r = _GanRows(n, dbits)
    h, w = _op_rows(r, "op", op, family, bits, prev, out, out, h, w, 2, norm)
    if norm:
        r.elt("norm", "norm", n * out * h * w)
    r.elt("act", "eltwise", n * out * h * w)
    return _frozen(r)


@lru_cache(maxsize=_CACHE)
def _dec_cell(op: str, family: str, bits: int, prev: int, out: int, n: int, h: int, w: int, norm: bool,
              dbits: int | None) -> Rows:
    """Upsampling, the op, norm and act (names relative to the cell); ``h``, ``w`` before upsampling."""
    r = _GanRows(n, dbits)
    r.std({"op": "upsample", "ops": 0, "params": 0, "in_elems": n * prev * h * w, "out_elems": n * prev * 4 * h * w,
           "name": "pre"})
    h, w = 2 * h, 2 * w
    _op_rows(r, "op", op, family, bits, prev, out, out, h, w, 1, norm)
    e = n * out * h * w
    if norm:
        r.elt("norm", "norm", e)
    r.elt("act", "eltwise", e)
    return _frozen(r)


@lru_cache(maxsize=_CACHE)
def _skip(name: str, add_name: str, src: int, out: int, n: int, sh: int, sw: int, e: int, dbits: int | None) -> RowBlock:
    """A U-Net skip: the encoder feature's 1x1 conv and the add of ``e`` elements (after the
    decoder cell's act)."""
    r = _GanRows(n, dbits)
    r.conv(name, src, out, sh, sw, 1)
    r.elt(add_name, "eltwise", e, 2 * e)
    return RowBlock(_frozen(r))


@lru_cache(maxsize=_CACHE)
def _head(n: int, prev: int, c_out: int, h: int, w: int, dbits: int | None) -> RowBlock:
    r = _GanRows(n, dbits)
    r.conv("head.0", prev, c_out, h, w, 7, bias=True)
    r.elt("head.1", "gelu", n * c_out * h * w, fused=False)
    return RowBlock(_frozen(r))


def _cell_labels(cell: str) -> tuple[str, str, str, str, str, str]:
    return (f"cells.{cell.replace('.', '_')}.", f"{cell}.keep", f"{cell}.op", f"{cell}.family", f"{cell}.bits", cell)


_ENC = tuple(_cell_labels(c) for c in ENC_CELLS)
_DEC = tuple(_cell_labels(c) for c in DEC_CELLS)
_BODY = tuple(_cell_labels(c) for c in body_cells(N_BODY))
_BODY_SR = tuple(_cell_labels(c) for c in body_cells(N_BODY_SR))
_SKIPS = tuple(f"unet.skip{i + 1}" for i in range(len(DEC_CELLS)))


_NO = object()
_WIDTH_LABELS = ("enc.stem.width", *(f"{c}.width" for c in (*ENC_CELLS, *DEC_CELLS, *body_cells(N_BODY))))
_WIDTHS: dict[tuple, dict[str, int]] = {}


def _widths(arch: Mapping[str, Any], base_width: int) -> dict[str, int]:
    """``translation_widths``, memoised on the architecture's width values (the same few values
    recur; the widths are computed per architecture on the batch path)."""
    key = (base_width, *map(arch.get, _WIDTH_LABELS, (_NO,) * len(_WIDTH_LABELS)))
    wd = _WIDTHS.get(key)
    if wd is None:
        if len(_WIDTHS) > _CACHE:
            _WIDTHS.clear()
        wd = _WIDTHS[key] = translation_widths(arch, base_width)
    return wd


def _body(arch: Mapping[str, Any], cells: tuple, wd: Mapping[str, int], trunk: int, n: int, h: int, w: int, norm: bool,
          dbits: int | None) -> list[tuple]:
    return [RowBlock(_res_cell(arch[op], arch[fam], int(arch[bt]), trunk, wd.get(cell, trunk), n, h, w, norm, dbits), key)
            if arch.get(kp, True) else () for key, kp, op, fam, bt, cell in cells]  # a skipped cell: no rows


def _block_options(norm: str, c: int, out_channels: int | None, default_bits: int | None) -> tuple[bool, int, int | None]:
    """``(has_norm, c_out, default_bits)`` for both generators' block writers, ``norm`` checked."""
    if norm not in ("instance", "none"):
        raise ValueError(f"norm: expected one of instance, none, found {norm!r}")
    return norm == "instance", (c if out_channels is None else int(out_channels)), (None if default_bits is None else int(default_bits))


def gan_generator_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, base_width: int = 16,
                                  norm: str = "instance", out_channels: int | None = None, default_bits: int | None = None,
                                  **_: Any) -> tuple:
    """``gan_generator_workloads`` as cached blocks of read-only rows (stem, one per cell, head),
    shared between architectures: ``hw_cost.blocks_to_array`` converts each distinct block once."""
    n, c, h, w = check_shape(input_shape)
    if h % 4 or w % 4:
        raise ValueError(f"input_shape: height and width must be multiples of 4, found {(h, w)}")
    has_norm, c_out, dbits = _block_options(norm, c, out_channels, default_bits)
    wd = _widths(arch, int(base_width))
    stem = wd["enc.stem"]
    out = [_stem(n, c, stem, h, w, has_norm, dbits)]
    feats = [(stem, h, w)]
    prev = stem
    for key, _kp, op, fam, bt, cell in _ENC:
        o = wd[cell]
        out.append(RowBlock(_enc_cell(arch[op], arch[fam], int(arch[bt]), prev, o, n, h, w, has_norm, dbits), key))
        h, w = out_size(h, 3, 2), out_size(w, 3, 2)
        feats.append((o, h, w))
        prev = o
    trunk = wd["trunk"]
    out += _body(arch, _BODY, wd, trunk, n, h, w, has_norm, dbits)
    adds = 0
    for level, (key, _kp, op, fam, bt, cell) in enumerate(_DEC):
        o = wd[cell]
        out.append(RowBlock(_dec_cell(arch[op], arch[fam], int(arch[bt]), prev, o, n, h, w, has_norm, dbits), key))
        if arch[_SKIPS[level]]:
            src, sh, sw = feats[len(ENC_CELLS) - 1 - level]
            out.append(_skip(f"skips.skip{level + 1}", "add" if adds == 0 else f"add_{adds}", src, o, n, sh, sw,
                             n * o * 4 * h * w, dbits))
            adds += 1
        h, w = 2 * h, 2 * w
        prev = o
    out.append(_head(n, prev, c_out, h, w, dbits))
    return tuple(out)


def gan_generator_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, base_width: int = 16, norm: str = "instance",
                            out_channels: int | None = None, default_bits: int | None = None, **_: Any) -> list:
    """Workload dicts of a ``gan-generator`` architecture on input ``(N, C, H, W)`` (see the module docstring)."""
    return [r for b in gan_generator_workload_blocks(arch, input_shape, base_width=base_width, norm=norm,
                                                     out_channels=out_channels, default_bits=default_bits) for r in b]


@lru_cache(maxsize=_CACHE)
def _sr_head(n: int, c: int, trunk: int, h: int, w: int, dbits: int | None) -> RowBlock:
    r = _GanRows(n, dbits)
    r.conv("head", c, trunk, h, w, 3, bias=True)
    return RowBlock(_frozen(r))


@lru_cache(maxsize=_CACHE)
def _sr_tail(n: int, trunk: int, c_out: int, h: int, w: int, s: int, dbits: int | None) -> RowBlock:
    r = _GanRows(n, dbits)
    r.conv("body_conv", trunk, trunk, h, w, 3, bias=True)
    e = n * trunk * h * w
    r.elt("add", "eltwise", e, 2 * e)
    steps = [(2, 4 * trunk)] * {2: 1, 4: 2, 8: 3}.get(s, 0) or [(3, 9 * trunk)]
    for i, (f, ch) in enumerate(steps):
        r.conv(f"upsample.{2 * i}", trunk, ch, h, w, 3, bias=True)
        r.elt(f"upsample.{2 * i + 1}", "pixel_shuffle", n * ch * h * w, ops=0)
        h, w = f * h, f * w
    r.conv("tail", trunk, c_out, h, w, 3, bias=True)
    return RowBlock(_frozen(r))


def gan_generator_sr_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, scale: int | None = None,
                                     base_width: int = 32, norm: str = "none", out_channels: int | None = None,
                                     default_bits: int | None = None, **_: Any) -> tuple:
    """``gan_generator_sr_workloads`` as cached blocks of read-only rows (head, one per body cell, tail)."""
    n, c, h, w = check_shape(input_shape)
    s = int(arch["sr.scale"])
    if scale is not None and int(scale) != s:
        raise ValueError(f"sr.scale: the data is x{int(scale)} but the architecture upscales x{s}")
    has_norm, c_out, dbits = _block_options(norm, c, out_channels, default_bits)
    wd = sr_widths(arch, int(base_width))
    trunk = wd["trunk"]
    return (_sr_head(n, c, trunk, h, w, dbits), *_body(arch, _BODY_SR, wd, trunk, n, h, w, has_norm, dbits),
            _sr_tail(n, trunk, c_out, h, w, s, dbits))


def gan_generator_sr_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, scale: int | None = None,
                               base_width: int = 32, norm: str = "none", out_channels: int | None = None,
                               default_bits: int | None = None, **_: Any) -> list:
    """Workload dicts of a ``gan-generator-sr`` architecture on LR input ``(N, C, H, W)``."""
    return [r for b in gan_generator_sr_workload_blocks(arch, input_shape, scale=scale, base_width=base_width, norm=norm,
                                                        out_channels=out_channels, default_bits=default_bits) for r in b]


gan_generator_workloads.blocks = gan_generator_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)
gan_generator_sr_workloads.blocks = gan_generator_sr_workload_blocks  # type: ignore[attr-defined]
