"""Supernet of the ``addernet-resnet`` space: one module for every op family, bit width, width
and depth of the three stages.

Weight sharing (decided here, documented for users):

* **op family**: each family (conv, adder, winograd_adder, binary) of a stage owns its own blocks
  (convolutions *and* batch norms), because their arithmetic is incompatible: an adder's
  ``-sum|x - w|`` and a conv's ``sum x w`` cannot share filters, nor the statistics after them.
  The family is switched per stage.
* **width**: channel slices of the widest weights: width k uses ``W[:k_out, :k_in]`` (and the
  first k batch-norm channels).
* **depth**: a stage with k blocks runs the first k blocks of its family.
* **bits**: the conv and adder families' b-bit layers fake-quantise the *same* float weights (a
  ``QuantConv2d`` / ``QuantAdderConv2d`` twin whose weight parameter is the float layer's);
  32 bits runs the float layer itself.
* the stem and the classifier are shared by every path.

Every layer comes from the builder's ``make_op`` at the widest shape, so the adder recipes
(ALR via ``apply_alr``, the lp schedule via ``set_progress``) and FDA's Fourier gradient and
schedules act inside the supernet exactly as in a stand-alone network. Dimensions that are not
architecture (``recipe.*``, ``manidp.*``) are fixed for the whole supernet (``fixed``, default:
the space's defaults); ManiDP gates are not supported in the supernet.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from spaces import Categorical, IntRange, SearchSpace
from supernets.resnet import BASE_WIDTHS, STRIDES, make_op, stage_width
from supernets.sampling import ChoiceLayer
from supernets.supernet import SlicedBatchNorm2d, SlicedConv2d, SlicedLinear, Supernet, register_supernet

STAGES = 3
ARCH_KEYS = ("op", "bits", "width", "blocks")
QUANTISABLE = ("conv", "adder")


def _sliceable(module: nn.Module) -> nn.Module:
    """Plain ``nn.Conv2d`` from ``make_op`` becomes a ``SlicedConv2d`` with the same shape."""
    if type(module) is nn.Conv2d:
        m = module
        return SlicedConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                            bias=m.bias is not None)
    return module


class SharedConv(nn.Module):
    """One conv position of one op family: the float layer (``main``) and, for quantisable
    families, a b-bit twin (``quant``) whose weight *is* ``main.weight``."""

    def __init__(self, op: str, in_ch: int, out_ch: int, kernel: int, stride: int, recipe: Mapping[str, Any], quant: bool,
                 *, make: Callable[[int], nn.Module] | None = None) -> None:
        """``make(bits)``: the layer at ``bits`` (default: ``supernets.resnet.make_op`` of ``op``);
        other supernets (the GAN generator's) pass their own layer factory."""
        super().__init__()
        if make is None:
            def make(bits: int) -> nn.Module:
                return make_op(op, in_ch, out_ch, kernel, stride, bits=bits, recipe=recipe)
        self.main = _sliceable(make(32))
        self.quant: nn.Module | None = None
        if quant and op in QUANTISABLE:
            q = make(8)
            q.weight = self.main.weight  # the twin quantises the shared float weights
            if hasattr(q, "alr"):
                q.alr = "off"  # ALR is applied once, by the float layer that owns the weight
            self.quant = q
        self.use_quant = False

    def set_active(self, out_channels: int, bits: int) -> None:
        self.main.active_out_channels = out_channels
        self.use_quant = self.quant is not None and bits < 32
        if self.quant is not None:
            self.quant.active_out_channels = out_channels
            if self.use_quant:
                self.quant.bits = int(bits)
                if hasattr(self.quant, "act_bits"):
                    self.quant.act_bits = int(bits)

    @property
    def active(self) -> nn.Module:
        return self.quant if self.use_quant else self.main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_quant:
            return self.main(x)
        y = self.quant(x)
        if torch.is_grad_enabled() and hasattr(self.main, "_alr_rows"):
            # ALR of the weight owner normalises over the filters any path used since the last step
            self.main._alr_rows = max(self.main._alr_rows, y.shape[1])
            self.main._alr_cols = max(self.main._alr_cols, x.shape[1])
        return y


class SuperBlock(nn.Module):
    """``BasicBlock`` of ``supernets.resnet`` at the widest shape, with the same child names."""

    def __init__(self, op: str, in_ch: int, out_ch: int, stride: int, recipe: Mapping[str, Any], quant: bool) -> None:
        super().__init__()
        self.conv1 = SharedConv(op, in_ch, out_ch, 3, stride, recipe, quant)
        self.bn1 = SlicedBatchNorm2d(out_ch)
        self.conv2 = SharedConv(op, out_ch, out_ch, 3, 1, recipe, quant)
        self.bn2 = SlicedBatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1:  # stage 1 keeps the stem's width, so only strided blocks change shape
            self.shortcut = nn.Sequential(SharedConv(op, in_ch, out_ch, 1, stride, recipe, quant), SlicedBatchNorm2d(out_ch))

    def shared_convs(self) -> list[SharedConv]:
        return [m for m in self.modules() if isinstance(m, SharedConv)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class AdderResNetSupernet(Supernet):
    """All architectures of (a restriction of) ``addernet-resnet`` in one module."""

    def __init__(self, space: SearchSpace, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 fixed: Mapping[str, Any] | None = None) -> None:
        fixed = dict(fixed or {})
        arch_labels = {f"stage{s}.{k}" for s in range(1, STAGES + 1) for k in ARCH_KEYS}
        defaults = space.default()
        for label in space.labels:
            if label not in arch_labels and label not in fixed and label in defaults:
                fixed[label] = defaults[label]
        if fixed.get("manidp.enabled"):
            raise ValueError("manidp.enabled: the addernet-resnet supernet has no dynamic gates; expected False, found True")
        super().__init__(space, {"input_shape": tuple(int(v) for v in input_shape), "num_classes": int(num_classes)}, fixed)
        if len(self.task["input_shape"]) != 3:
            raise ValueError(f"input_shape: expected (channels, height, width), found {self.task['input_shape']!r}")
        recipe = {k.split(".", 1)[1]: v for k, v in fixed.items() if k.startswith("recipe.")}
        self.max_width: list[int] = []
        self.families: list[tuple[str, ...]] = []
        self.stages = nn.ModuleList()
        prev = None
        for s in range(1, STAGES + 1):
            ops = self._values(f"stage{s}.op")
            bits = self._values(f"stage{s}.bits")
            width = stage_width(BASE_WIDTHS[s - 1], max(float(w) for w in self._values(f"stage{s}.width")))
            depth = max(int(b) for b in self._values(f"stage{s}.blocks"))
            quant = any(int(b) < 32 for b in bits)
            in_ch = width if prev is None else prev
            stage = nn.ModuleDict()
            for op in ops:
                stage[op] = nn.ModuleList(
                    SuperBlock(op, in_ch if b == 0 else width, width, STRIDES[s - 1] if b == 0 else 1, recipe, quant)
                    for b in range(depth)
                )
            self.stages.append(stage)
            self.max_width.append(width)
            self.families.append(tuple(ops))
            prev = width
        c_in = int(self.task["input_shape"][0])
        self.stem = nn.Sequential(SlicedConv2d(c_in, self.max_width[0], 3, 1, 1, bias=False), SlicedBatchNorm2d(self.max_width[0]), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = SlicedLinear(self.max_width[-1], int(num_classes))
        self._route: list[tuple[str, int]] = []
        self.set_active({layer.label: layer.choices[-1] for layer in self.choice_layers()})

    def _values(self, label: str) -> tuple:
        """The values a dimension can take here: the fixed one, or every choice of the space."""
        if label in self.fixed:
            return (self.fixed[label],)
        d = self.space[label]
        if isinstance(d, Categorical):
            return tuple(d.choices)
        if isinstance(d, IntRange):
            return tuple(range(d.low, d.high + 1, d.step))
        raise TypeError(f"{label}: the supernet needs a categorical or integer dimension, found {type(d).__name__}")

    def choice_layers(self) -> list[ChoiceLayer]:
        layers = []
        for s in range(1, STAGES + 1):
            for key in ARCH_KEYS:
                label = f"stage{s}.{key}"
                if label in self.fixed:
                    continue
                values = self._values(label)
                if key == "op":
                    layers.append(ChoiceLayer(label, values, ordered=False))
                else:
                    layers.append(ChoiceLayer(label, tuple(sorted(values, key=float))))
        return layers

    def _activate(self, arch: Mapping[str, Any]) -> None:
        route = []
        width0 = stage_width(BASE_WIDTHS[0], float(arch["stage1.width"]))
        self.stem[0].active_out_channels = width0
        for s in range(1, STAGES + 1):
            op = arch[f"stage{s}.op"]
            width = stage_width(BASE_WIDTHS[s - 1], float(arch[f"stage{s}.width"]))
            bits = int(arch.get(f"stage{s}.bits", 32))
            blocks = int(arch[f"stage{s}.blocks"])
            for block in self.stages[s - 1][op][:blocks]:
                for conv in block.shared_convs():
                    conv.set_active(width, bits)
            route.append((op, blocks))
        self._route = route

    def path_size(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``params``/``macs`` of the built network as the sum of its parts (stem, each
        ``BasicBlock``, classifier), each part built and counted once per shape and memoised:
        both counts are sums over the network's layers, so the total equals counting the whole
        built network (a test checks it) at the cost of a few dictionary look-ups per candidate."""
        from supernets.resnet import BasicBlock

        full = self.complete(arch)
        c_in, h, w = (int(v) for v in self.task["input_shape"])
        recipe = tuple(sorted((k.split(".", 1)[1], v) for k, v in full.items() if k.startswith("recipe.")))
        width0 = stage_width(BASE_WIDTHS[0], float(full["stage1.width"]))
        total = dict(self._part_size(("stem", c_in, width0, h, w), lambda: nn.Sequential(
            nn.Conv2d(c_in, width0, 3, 1, 1, bias=False), nn.BatchNorm2d(width0), nn.ReLU()), (c_in, h, w)))
        prev = width0
        for s in range(1, STAGES + 1):
            op, bits = full[f"stage{s}.op"], int(full.get(f"stage{s}.bits", 32))
            width = stage_width(BASE_WIDTHS[s - 1], float(full[f"stage{s}.width"]))
            for b in range(int(full[f"stage{s}.blocks"])):
                stride = STRIDES[s - 1] if b == 0 else 1
                key = ("block", op, bits, prev, width, stride, h, w, recipe)
                part = self._part_size(key, lambda: BasicBlock(op, prev, width, stride, bits, dict(recipe)), (prev, h, w))
                total = {k: total[k] + part[k] for k in total}
                h, w, prev = (h - 1) // stride + 1, (w - 1) // stride + 1, width  # 3x3, padding 1
        fc = self._part_size(("fc", prev, int(self.task["num_classes"])), lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(prev, int(self.task["num_classes"]))), (prev, 1, 1))
        return {k: float(total[k] + fc[k]) for k in total}

    def _part_size(self, key: tuple, make: Any, input_shape: tuple[int, ...]) -> dict[str, int]:
        from evaluators import count_macs, count_params

        cache = self.__dict__.setdefault("_size_cache", {})
        if key not in cache:
            part = make()
            cache[key] = {"params": count_params(part), "macs": count_macs(part, input_shape)}
        return cache[key]

    def path_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.stem, self.pool, self.fc]
        for stage, (op, blocks) in zip(self.stages, self._route):
            mods.extend(stage[op][:blocks])
        return mods

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage, (op, blocks) in zip(self.stages, self._route):
            for block in stage[op][:blocks]:
                x = block(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    def _module_map(self, arch: Mapping[str, Any]) -> dict[str, str]:
        mapping = {"stem": "stem", "fc": "fc"}
        i = 0
        for s in range(1, STAGES + 1):
            op = arch[f"stage{s}.op"]
            bits = int(arch.get(f"stage{s}.bits", 32))
            for b in range(int(arch[f"stage{s}.blocks"])):
                src = f"stages.{s - 1}.{op}.{b}"
                block = self.stages[s - 1][op][b]
                mapping[f"blocks.{i}"] = src
                for name in ("conv1", "conv2", "shortcut.0"):
                    conv = block.get_submodule(name) if name != "shortcut.0" or not isinstance(block.shortcut, nn.Identity) else None
                    if conv is not None:
                        twin = conv.quant is not None and bits < 32
                        mapping[f"blocks.{i}.{name}"] = f"{src}.{name}.{'quant' if twin else 'main'}"
                i += 1
        return mapping


@register_supernet("addernet-resnet")
def addernet_resnet_supernet(space: SearchSpace, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                             fixed: Mapping[str, Any] | None = None) -> AdderResNetSupernet:
    return AdderResNetSupernet(space, input_shape=input_shape, num_classes=num_classes, fixed=fixed)
