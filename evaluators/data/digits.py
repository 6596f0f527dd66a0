"""scikit-learn's embedded 8x8 handwritten digits: the default data set, so searches run anywhere."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from .base import ClassificationDataModule, TransformDataset, stratified_split
from .registry import register_datamodule


@register_datamodule("digits")
class DigitsDataModule(ClassificationDataModule):
    """1797 grey 8x8 digits (UCI optdigits test set, as shipped in scikit-learn), 10 classes.

    Images are ``1x8x8`` float tensors: pixel values (0..16) scaled to [0, 1], then standardised with
    the mean and standard deviation of the *training* split (a single scalar each, since there is one
    channel). The split is stratified and fixed by ``seed``.
    """

    name = "digits"

    def __init__(self, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"digits: val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.input_shape = (1, 8, 8)
        self.num_classes = 10
        self.mean: float | None = None
        self.std: float | None = None
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        bunch = load_digits()
        x = bunch.images.astype(np.float32) / 16.0  # (N, 8, 8), raw range 0..16
        y = bunch.target.astype(np.int64)
        train_idx, val_idx = stratified_split(y, self.val_fraction, self.seed)
        self.mean = float(x[train_idx].mean())
        self.std = float(x[train_idx].std())
        x = (x - self.mean) / self.std
        images = torch.from_numpy(x).unsqueeze(1)
        labels = torch.from_numpy(y)
        self.train_indices, self.val_indices = train_idx, val_idx
        self.train_set = TransformDataset(images[train_idx], labels[train_idx])
        self.val_set = TransformDataset(images[val_idx], labels[val_idx])

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "val_fraction": self.val_fraction}
