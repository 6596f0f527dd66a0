"""Weight-sharing supernets of ``gan-generator`` and ``gan-generator-sr`` (``build_supernet(name, ...)``).

One module serves every architecture of (a restriction of) the space, so the staged
coarse-to-fine search trains one set of weights per stage and scores sub-generators by inheriting
them (``set_active`` / ``extract``). Weight sharing, decided here:

* **path**: a skipped body cell is bypassed (its weights stay); a U-Net skip's 1x1 projection runs
  only when kept;
* **operator**: every (op, family) pair of a cell owns its weights (a conv's and an adder's
  filters, or a 3x3 and a 1x1 kernel, cannot be one tensor); **bits** fake-quantise the *same*
  float weights through a b-bit twin (``supernets.resnet_supernet.SharedConv``);
* **channel**: slimmable: width k uses ``W[:k_out, :k_in]`` of the widest layer (the first k
  filters), depthwise convs the first k filters; instance norm has no state, so nothing else.

Dimensions outside the three groups (``sr.scale``) are fixed for the whole supernet. The choice
layers are the unfixed group dimensions whose conditions the fixed values do not rule out, so a
stage that fixes the path (``fixed={"body.b3.keep": False, ...}``) drops the skipped cells'
operator and channel layers; the strict-fair sampler (``supernets.sampling``) works over them.
"""

from __future__ import annotations

from itertools import product
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from spaces import Categorical, SearchSpace
from spaces.gan_generator import DEC_CELLS, ENC_CELLS, N_BODY, N_BODY_SR, N_DOWN, body_cells, dimension_group
from supernets.edsr import Upsampler
from supernets.gan_generator import (Cell, DWSepOp, ResBlockOp, SingleConvOp, SRGenerator, TranslationGenerator, channels,
                                     key_of, make_dense, make_norm, make_op_module, sr_widths, translation_widths)
from supernets.resnet_supernet import SharedConv
from supernets.sampling import ChoiceLayer
from supernets.supernet import SlicedConv2d, Supernet, register_supernet

__all__ = ["SuperCell", "GanGeneratorSupernet", "choice_key"]

_ORDERED_SUFFIXES = ("width", "bits", "keep")


def choice_key(op: str, family: str) -> str:
    return f"{op}-{family}"


class SuperCell(Cell):
    """A cell holding every (op, family) choice; ``keep=False`` makes it an identity."""

    def __init__(self, mode: str, choices: Mapping[str, nn.Module], norm: nn.Module) -> None:
        super().__init__(mode, None, norm)
        self.choices = nn.ModuleDict(dict(choices))
        self.active = next(iter(self.choices))
        self.keep = True

    def current_op(self) -> nn.Module:
        return self.choices[self.active]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.keep else x


def _set_widths(op: nn.Module, out: int, inner: int, bits: int) -> None:
    """Route the op's shared convs to ``out`` (and ``inner``) filters at ``bits``."""
    if isinstance(op, SingleConvOp):
        op.conv.set_active(out, bits)
    elif isinstance(op, ResBlockOp):
        op.conv1.set_active(inner, bits)
        op.conv2.set_active(out, bits)
    elif isinstance(op, DWSepOp):
        op.pw1.set_active(inner, bits)
        op.pw2.set_active(out, bits)  # the depthwise conv follows its input
    else:  # pragma: no cover - make_op_module makes only these
        raise TypeError(f"unknown op module {type(op).__name__}")


class GanGeneratorSupernet(Supernet):
    """Every architecture of ``gan-generator`` (translation) or ``gan-generator-sr`` in one module."""

    def __init__(self, space: SearchSpace, *, input_shape: Sequence[int], fixed: Mapping[str, Any] | None = None,
                 scale: int | None = None, **options: Any) -> None:
        space = space.with_options(options) if options else space
        self.sr = "sr.scale" in space.labels
        fixed = dict(fixed or {})
        for label in space.labels:
            if dimension_group(label) is None and label not in fixed:
                fixed[label] = int(scale) if (label == "sr.scale" and scale is not None) else space[label].default_value()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape: expected (channels, height, width), found {shape!r}")
        task: dict[str, Any] = {"input_shape": shape}
        if self.sr:
            task["scale"] = int(fixed["sr.scale"])
        super().__init__(space, task, fixed)
        opts = dict(space.options)
        self.norm = str(opts.get("norm", "none" if self.sr else "instance"))
        self.base_width = int(opts.get("base_width", 32 if self.sr else 16))
        c_in = shape[0]
        c_out = int(opts.get("out_channels") or c_in)
        self.net = self._build_sr(c_in, c_out) if self.sr else self._build_translation(c_in, c_out)
        self.set_active({layer.label: layer.choices[-1] for layer in self.choice_layers()})

    # -- what can be chosen -----------------------------------------------------------------
    def _values(self, label: str) -> tuple:
        if label in self.fixed:
            return (self.fixed[label],)
        d = self.space[label]
        if not isinstance(d, Categorical):  # pragma: no cover - the spaces are categorical
            raise TypeError(f"{label}: the supernet needs a categorical dimension, found {type(d).__name__}")
        return tuple(d.choices)

    def _possible(self, label: str) -> bool:
        """False when a fixed value rules out one of the dimension's conditions."""
        return all(c.label not in self.fixed or self.fixed[c.label] in c.values for c in self.space[label].conditions)

    def _max_mult(self, label: str) -> float:
        return max(float(v) for v in self._values(label)) if label in self.space.labels else 1.0

    def choice_layers(self) -> list[ChoiceLayer]:
        layers = []
        for label in self.space.labels:
            if label in self.fixed or dimension_group(label) is None or not self._possible(label):
                continue
            values = self._values(label)
            if label.rsplit(".", 1)[-1] in _ORDERED_SUFFIXES or label.startswith("unet."):
                layers.append(ChoiceLayer(label, tuple(sorted(values, key=float))))
            else:
                layers.append(ChoiceLayer(label, values, ordered=False))
        return layers

    # -- construction at the widest shape ---------------------------------------------------
    def _norm(self, c: int) -> nn.Module:
        return make_norm(self.norm, c)

    def _choices(self, cell: str, cin: int, cout: int, inner: int, stride: int) -> dict[str, nn.Module]:
        if not self._possible(f"{cell}.op"):
            return {}
        quant = any(int(b) < 32 for b in self._values(f"{cell}.bits"))
        out: dict[str, nn.Module] = {}
        for op, family in product(self._values(f"{cell}.op"), self._values(f"{cell}.family")):
            def dense(ci: int, co: int, kernel: int, s: int, dilation: int, family: str = family) -> nn.Module:
                return SharedConv(family, ci, co, kernel, s, {}, quant,
                                  make=lambda bits: make_dense(family, bits, ci, co, kernel, s, dilation))

            def depthwise(c: int, s: int) -> nn.Module:
                return SlicedConv2d(c, c, 3, s, 1, groups=c, bias=False)

            out[choice_key(op, family)] = make_op_module(op, dense, depthwise, cin, cout, inner, stride, self._norm)
        return out

    def _build_translation(self, c_in: int, c_out: int) -> nn.Module:
        base = self.base_width
        w = {"enc.stem": channels(base, self._max_mult("enc.stem.width"))}
        for i, cell in enumerate(ENC_CELLS, start=1):
            w[cell] = channels(base * 2 ** i, self._max_mult(f"{cell}.width"))
        for i, cell in enumerate(DEC_CELLS, start=1):
            w[cell] = channels(base * 2 ** (N_DOWN - i), self._max_mult(f"{cell}.width"))
        trunk = w[ENC_CELLS[-1]]
        bias = self.norm == "none"
        stem = nn.Sequential(SlicedConv2d(c_in, w["enc.stem"], 7, 1, 3, bias=bias), self._norm(w["enc.stem"]), nn.ReLU())
        cells: dict[str, nn.Module] = {}
        prev = w["enc.stem"]
        for cell in ENC_CELLS:
            cells[key_of(cell)] = SuperCell("down", self._choices(cell, prev, w[cell], w[cell], 2), self._norm(w[cell]))
            prev = w[cell]
        for cell in body_cells(N_BODY):
            inner = channels(base * 2 ** N_DOWN, self._max_mult(f"{cell}.width"))
            choices = self._choices(cell, trunk, trunk, inner, 1)
            cells[key_of(cell)] = SuperCell("res", choices, self._norm(trunk)) if choices else nn.Identity()
        prev = trunk
        for cell in DEC_CELLS:
            cells[key_of(cell)] = SuperCell("up", self._choices(cell, prev, w[cell], w[cell], 1), self._norm(w[cell]))
            prev = w[cell]
        sources = [w["enc.stem"], *(w[c] for c in ENC_CELLS)]
        skips = {}
        for level, cell in enumerate(DEC_CELLS):
            name = f"skip{level + 1}"
            if True in self._values(f"unet.{name}"):
                skips[name] = SlicedConv2d(sources[N_DOWN - 1 - level], w[cell], 1, bias=False)
        head = nn.Sequential(SlicedConv2d(prev, c_out, 7, 1, 3, bias=True), nn.Sigmoid())
        return TranslationGenerator(stem, cells, skips, head, list(skips))

    def _build_sr(self, c_in: int, c_out: int) -> nn.Module:
        base, scale = self.base_width, int(self.fixed["sr.scale"])
        trunk = channels(base, self._max_mult("head.width"))
        cells: dict[str, nn.Module] = {}
        for cell in body_cells(N_BODY_SR):
            choices = self._choices(cell, trunk, trunk, channels(base, self._max_mult(f"{cell}.width")), 1)
            cells[key_of(cell)] = SuperCell("res", choices, self._norm(trunk)) if choices else nn.Identity()
        upsample = Upsampler(scale, trunk)
        for i, m in enumerate(upsample):
            if type(m) is nn.Conv2d:
                upsample[i] = SlicedConv2d(m.in_channels, m.out_channels, 3, 1, 1, bias=True)
        return SRGenerator(SlicedConv2d(c_in, trunk, 3, 1, 1), cells, SlicedConv2d(trunk, trunk, 3, 1, 1), upsample,
                           SlicedConv2d(trunk, c_out, 3, 1, 1), scale)

    # -- routing ----------------------------------------------------------------------------
    def _route_cell(self, cell: str, arch: Mapping[str, Any], out: int, inner: int) -> None:
        module = self.net.cells[key_of(cell)]
        keep = bool(arch.get(f"{cell}.keep", True))
        if not isinstance(module, SuperCell):
            if keep:
                raise ValueError(f"{cell}.keep: this supernet was built with the cell skipped")
            return
        module.keep = keep
        if keep:
            module.active = choice_key(arch[f"{cell}.op"], arch[f"{cell}.family"])
            _set_widths(module.current_op(), out, inner, int(arch[f"{cell}.bits"]))

    def _activate(self, arch: Mapping[str, Any]) -> None:
        net = self.net
        if self.sr:
            w = sr_widths(arch, self.base_width)
            trunk = w["trunk"]
            net.head.active_out_channels = trunk
            net.body_conv.active_out_channels = trunk
            for m in net.upsample:
                if isinstance(m, SlicedConv2d):
                    m.active_out_channels = trunk * m.out_channels // m.in_channels
            for cell in body_cells(N_BODY_SR):
                self._route_cell(cell, arch, trunk, w.get(cell, trunk))
            return
        w = translation_widths(arch, self.base_width)
        net.stem[0].active_out_channels = w["enc.stem"]
        for cell in ENC_CELLS + DEC_CELLS:
            self._route_cell(cell, arch, w[cell], w[cell])
        for cell in body_cells(N_BODY):
            self._route_cell(cell, arch, w["trunk"], w.get(cell, w["trunk"]))
        active = set()
        for level, cell in enumerate(DEC_CELLS):
            name = f"skip{level + 1}"
            if arch[f"unet.{name}"]:
                if name not in net.skips:
                    raise ValueError(f"unet.{name}: this supernet was built without the skip")
                net.skips[name].active_out_channels = w[cell]
                active.add(name)
        net.active_skips = active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- extraction -------------------------------------------------------------------------
    def _module_map(self, arch: Mapping[str, Any]) -> dict[str, str]:
        mapping = {name: f"net.{name}" for name, _ in self.net.named_children()}
        cells = body_cells(N_BODY_SR) if self.sr else ENC_CELLS + body_cells(N_BODY) + DEC_CELLS
        for cell in cells:
            if not arch.get(f"{cell}.keep", True):
                continue
            key = key_of(cell)
            choice = choice_key(arch[f"{cell}.op"], arch[f"{cell}.family"])
            src = f"net.cells.{key}.choices.{choice}"
            mapping[f"cells.{key}.op"] = src
            bits = int(arch[f"{cell}.bits"])
            for name, mod in self.net.cells[key].choices[choice].named_modules():
                if isinstance(mod, SharedConv):
                    twin = mod.quant is not None and bits < 32
                    mapping[f"cells.{key}.op.{name}"] = f"{src}.{name}.{'quant' if twin else 'main'}"
        return mapping


def _factory(space: SearchSpace, *, input_shape: Sequence[int], num_classes: int = 0,
             fixed: Mapping[str, Any] | None = None, **options: Any) -> GanGeneratorSupernet:
    """``num_classes`` is accepted for the common signature and not used (a generator outputs images)."""
    return GanGeneratorSupernet(space, input_shape=input_shape, fixed=fixed, **options)


register_supernet("gan-generator")(_factory)
register_supernet("gan-generator-sr")(_factory)
