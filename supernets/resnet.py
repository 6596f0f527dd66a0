"""Builder of the ``addernet-resnet`` space: a ResNet-20-style network with per-stage ops.

Layout follows AdderNet's ResNet-20 (``huawei-noah/AdderNet`` ``resnet20.py``): a *standard*
conv stem, three stages of basic blocks whose 3x3 convs and 1x1 downsample shortcuts use the
stage's op, each followed by batch norm (an adder output is always <= 0, so a ReLU straight
after it would be identically zero; BN's shift is what makes it trainable), global average
pooling and a standard linear classifier.

Op mapping (decided here, documented for users):
- ``conv`` -> ``nn.Conv2d`` at 32 bits, ``QuantConv2d`` below;
- ``adder`` -> ``AdderConv2d`` at 32 bits, ``QuantAdderConv2d`` (one shared scale) below;
- ``winograd_adder`` -> ``WinogradAdderConv2d`` for 3x3 stride-1 convs; the stride-2 conv and
  the 1x1 shortcut have no Winograd form and use the direct ``AdderConv2d``;
- ``binary`` -> ``BinaryConv2d`` (FDA gradient) for the 3x3 convs; the 1x1 downsample shortcut
  stays a full-precision conv, as in common binary-ResNet practice (FDA-BNN, Bi-Real).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from supernets.ops import get_op

BASE_WIDTHS = (16, 32, 64)
STRIDES = (1, 2, 2)


def stage_width(base: int, multiplier: float) -> int:
    """Channels of a stage: base x multiplier, at least 4 (a 0.25 x 16 stage has 4 channels)."""
    return max(4, int(round(base * multiplier)))


def make_op(op: str, in_ch: int, out_ch: int, kernel: int, stride: int, *, bits: int = 32, recipe: Mapping[str, Any] | None = None) -> nn.Module:
    """One conv-like layer of the given op family (see the module docstring for the mapping)."""
    recipe = recipe or {}
    padding = kernel // 2
    eta = float(recipe.get("adder_eta", 0.2))
    lp = bool(recipe.get("lp_schedule", False))
    if op == "conv":
        if bits >= 32:
            return nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        return get_op("quant_conv")(in_ch, out_ch, kernel, stride=stride, padding=padding, bits=bits)
    if op == "winograd_adder" and kernel == 3 and stride == 1:
        return get_op("winograd_adder")(in_ch, out_ch, kernel, padding=padding, p_start=2.0 if lp else 1.0, p_end=1.0, eta=eta)
    if op in ("adder", "winograd_adder"):
        if bits >= 32 or op == "winograd_adder":
            return get_op("adder")(in_ch, out_ch, kernel, stride=stride, padding=padding, eta=eta, p_schedule=(2.0, 1.0) if lp else None)
        return get_op("quant_adder")(in_ch, out_ch, kernel, stride=stride, padding=padding, bits=bits, eta=eta)
    if op == "binary":
        if kernel == 1:
            return nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        terms = int(recipe.get("fda_terms", 18))
        return get_op("binary")(in_ch, out_ch, kernel, stride=stride, padding=padding, grad="fda", n_start=terms // 2, n_end=terms)
    raise ValueError(f"op: expected one of conv, adder, winograd_adder, binary, found {op!r}")


class BasicBlock(nn.Module):
    """op3x3-BN-ReLU-op3x3-BN plus a shortcut (op1x1-BN when the shape changes), then ReLU."""

    def __init__(self, op: str, in_ch: int, out_ch: int, stride: int, bits: int, recipe: Mapping[str, Any]) -> None:
        super().__init__()
        self.conv1 = make_op(op, in_ch, out_ch, 3, stride, bits=bits, recipe=recipe)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = make_op(op, out_ch, out_ch, 3, 1, bits=bits, recipe=recipe)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(make_op(op, in_ch, out_ch, 1, stride, bits=bits, recipe=recipe), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class AdderResNet(nn.Module):
    def __init__(self, stages: Sequence[dict], input_shape: Sequence[int], num_classes: int, recipe: Mapping[str, Any]) -> None:
        super().__init__()
        in_ch = int(input_shape[0])
        width0 = stages[0]["width"]
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width0, 3, 1, 1, bias=False), nn.BatchNorm2d(width0), nn.ReLU())
        blocks: list[nn.Module] = []
        prev = width0
        for spec, stride in zip(stages, STRIDES):
            for b in range(spec["blocks"]):
                blocks.append(BasicBlock(spec["op"], prev, spec["width"], stride if b == 0 else 1, spec["bits"], recipe))
                prev = spec["width"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_addernet_resnet(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **_: Any) -> nn.Module:
    """Build from a validated ``addernet-resnet`` architecture, sized to ``input_shape`` (C, H, W)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
    stages = [
        {
            "op": arch[f"stage{s}.op"],
            "bits": int(arch.get(f"stage{s}.bits", 32)),
            "width": stage_width(BASE_WIDTHS[s - 1], float(arch[f"stage{s}.width"])),
            "blocks": int(arch[f"stage{s}.blocks"]),
        }
        for s in (1, 2, 3)
    ]
    recipe = {k.split(".", 1)[1]: v for k, v in arch.items() if k.startswith("recipe.")}
    model: nn.Module = AdderResNet(stages, input_shape, num_classes, recipe)
    if arch.get("manidp.enabled"):
        from supernets.manidp import add_dynamic_gates, manidp_kwargs

        model = add_dynamic_gates(model, **manidp_kwargs(arch))
    return model
