"""The input normalisation of an exported model, as a module: raw input -> what the network saw.

``Preprocess`` computes ``(x * scale - mean) / std`` per channel from the ``preprocessing``
record of ``arch.json`` (``evaluators.data.preprocessing``); ``RawInputModel`` puts it in front
of the network, so ``load_exported(dir)(raw)`` classifies raw inputs. The bare network stays at
``.network`` (what the cost model traces: the normalisation is not part of the accelerator).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn


class Preprocess(nn.Module):
    def __init__(self, scale: float, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"preprocessing: expected one positive std per mean, found mean {list(mean)} and std {list(std)}")
        self.scale = float(scale)
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == 3:  # one image
            x = x.unsqueeze(0)
        return (x * self.scale - self.mean) / self.std

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Preprocess":
        return cls(record.get("scale", 1.0), record["mean"], record["std"])


class RawInputModel(nn.Module):
    """``network(preprocess(x))``, with the record's ``class_names`` and ``raw_input`` description."""

    def __init__(self, network: nn.Module, preprocessing: Mapping[str, Any]) -> None:
        super().__init__()
        self.preprocess = Preprocess.from_record(preprocessing)
        self.network = network
        self.class_names: list[str] = list(preprocessing.get("class_names", []))
        self.raw_input: str = str(preprocessing.get("raw_input", ""))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(x))
