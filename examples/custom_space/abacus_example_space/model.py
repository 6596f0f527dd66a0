"""The plug-in's network and its new op (torch lives here, not in the space definition)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn


class SepConv2d(nn.Module):
    """Depthwise k x k conv then pointwise 1x1 conv: one module, two workloads for the cost model."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel, stride, kernel // 2, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def hw_workload(self, input_shape: Sequence[int], output_shape: Sequence[int]) -> list[dict]:
        """Shapes are (N, C, H, W) with the batch. No ``w_bits``/``a_bits``: the search's
        ``hardware.default_bits`` (32 = float when unset) applies, as for standard torch layers."""
        n, cin, h, w = input_shape
        _, cout, ho, wo = output_shape
        pixels = n * ho * wo
        taps = self.kernel * self.kernel
        return [
            # the depthwise conv reads the whole input map (H x W, not Ho x Wo: they differ at stride 2)
            {"op": "dwconv", "ops": pixels * cin * taps, "params": cin * taps,
             "in_elems": n * cin * h * w, "out_elems": pixels * cin,
             "in_channels": cin, "out_channels": cin, "kernel": taps, "out_pixels": pixels, "name": "depthwise"},
            {"op": "conv", "ops": pixels * cin * cout, "params": cin * cout,
             "in_elems": pixels * cin, "out_elems": pixels * cout,
             "in_channels": cin, "out_channels": cout, "kernel": 1, "out_pixels": pixels, "name": "pointwise"},
        ]


def build(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **_: Any) -> nn.Module:
    layers: list[nn.Module] = []
    prev = int(input_shape[0])
    for b in range(1, 4):
        width = int(arch[f"block{b}.width"])
        layers += [SepConv2d(prev, width, int(arch[f"block{b}.kernel"]), stride=1 if b == 1 else 2), nn.BatchNorm2d(width), nn.ReLU()]
        prev = width
    hidden = int(arch["head.hidden"])
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)
