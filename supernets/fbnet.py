"""Builder of the ``fbnet`` space (HW-NAS-Bench's FBNet layout; see ``spaces/fbnet.py``).

Written for abacus from the published description of ``FBNet_Infer``: every block is plain torch
layers (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``, ``nn.ChannelShuffle``) and one residual
``+``, so the tracer costs it without any ``hw_workload`` and ``spaces/fbnet_workloads.py`` writes
the same rows without torch (tested in ``tests/hw_cost/test_space_contract.py``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from spaces.fbnet import CHANNELS, N_LAYERS, STEM_CHANNELS, check_setting, layer_plan, parse_op


class ConvBNReLU(nn.Sequential):
    """k x k conv, BN, ReLU (stem, header, and a ``skip`` layer that changes shape)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()


class InvertedResidual(nn.Module):
    """1x1 (groups g) -> BN -> ReLU [-> shuffle] -> KxK depthwise -> BN -> ReLU -> 1x1 (groups g) -> BN [+ x]."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expansion: int, groups: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.shuffle = nn.ChannelShuffle(groups) if groups > 1 else None
        self.conv2 = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return y + x if self.residual else y


class FBNet(nn.Module):
    def __init__(self, ops: Sequence[str], in_channels: int, num_classes: int, setting: str) -> None:
        super().__init__()
        stem_stride, _, header = check_setting(setting)
        self.stem = ConvBNReLU(in_channels, STEM_CHANNELS, 3, stem_stride)
        cells: list[nn.Module] = []
        for op, (cin, cout, stride) in zip(ops, layer_plan(setting)):
            p = parse_op(op)
            if p is not None:
                cells.append(InvertedResidual(cin, cout, stride, *p))
            elif stride != 1 or cin != cout:
                cells.append(ConvBNReLU(cin, cout, 1, stride))
            else:
                cells.append(nn.Identity())
        self.cells = nn.Sequential(*cells)
        self.header = ConvBNReLU(CHANNELS[-1], header, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(header, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.header(self.cells(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_fbnet(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 100,
                setting: str = "cifar", **_: Any) -> nn.Module:
    """Build from a validated ``fbnet`` architecture; ``input_shape`` is (C, H, W)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
    ops = [arch[f"layer{i}.op"] for i in range(1, N_LAYERS + 1)]
    return FBNet(ops, int(input_shape[0]), num_classes, setting)
