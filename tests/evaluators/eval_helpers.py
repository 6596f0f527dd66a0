"""Tiny models and file writers shared by the evaluator tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn


def tiny_mlp(in_features: int = 64, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, classes))


def tiny_cnn(in_ch: int = 1, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4),  # 8x8 inputs (digits) pass unchanged; larger ones are pooled to 4x4
        nn.Flatten(),
        nn.Linear(128, classes),
    )


def write_cifar_batch(
    path: Path, data: np.ndarray, labels: list[int], label_key: bytes = b"labels", extra: dict | None = None
) -> None:
    """Pickle one batch the way the official (python 2) files are: bytes keys, protocol 2."""
    batch = {b"batch_label": b"test batch", b"data": data, label_key: labels, b"filenames": [b"x.png"] * len(labels)}
    batch.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def random_cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)
