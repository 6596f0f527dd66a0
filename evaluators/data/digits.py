"""scikit-learn's embedded 8x8 handwritten digits: the default data set, so searches run anywhere."""

from __future__ import annotations

import numpy as np
import torch

from .base import ClassificationDataModule, TransformDataset
from .digits_arrays import INPUT_SHAPE, NUM_CLASSES, check_fractions, load_arrays
from .registry import register_datamodule
from .splits import carve_splits


@register_datamodule("digits")
class DigitsDataModule(ClassificationDataModule):
    """1797 grey 8x8 digits (UCI optdigits test set, as shipped in scikit-learn), 10 classes.

    Images are ``1x8x8`` float tensors: pixel values (0..16) scaled to [0, 1], then standardised with
    the mean and standard deviation of the *training* split (a single scalar each, since there is one
    channel).

    Splits (stratified): ``test_fraction`` of all images is held out as the test split, fixed by
    ``test_seed`` whatever the search seed; ``val_fraction`` of the rest is validation, fixed by
    ``seed``. Defaults: 360 test, 288 validation, 1149 training images. ``test_fraction=0`` keeps
    no test split (1437 / 360 with the defaults, the split of earlier versions).
    """

    name = "digits"

    def __init__(self, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64, num_workers: int = 0,
                 test_fraction: float = 0.2, test_seed: int = 0, train_on_val: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_on_val=train_on_val)
        self.val_fraction, self.test_fraction = check_fractions(val_fraction, test_fraction)
        self.test_seed = int(test_seed)
        self.input_shape = INPUT_SHAPE
        self.num_classes = NUM_CLASSES
        self.mean: float | None = None
        self.std: float | None = None
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None
        self.test_indices: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x, y = load_arrays()  # (N, 8, 8) in [0, 1], labels
        train_idx, val_idx, test_idx = carve_splits(y, self.val_fraction, self.test_fraction, self.seed, self.test_seed)
        self.mean = float(x[train_idx].mean())
        self.std = float(x[train_idx].std())
        x = (x - self.mean) / self.std
        images = torch.from_numpy(x).unsqueeze(1)
        labels = torch.from_numpy(y)
        self.train_indices, self.val_indices, self.test_indices = train_idx, val_idx, test_idx
        fit_idx = np.sort(np.concatenate([train_idx, val_idx])) if self.train_on_val else train_idx
        self.train_set = TransformDataset(images[fit_idx], labels[fit_idx])
        self.val_set = TransformDataset(images[val_idx], labels[val_idx])
        if len(test_idx):
            self.test_set = TransformDataset(images[test_idx], labels[test_idx])

    def split_keys(self) -> dict[str, list]:
        self.setup()
        return {"val": self.val_indices.tolist(), "test": self.test_indices.tolist()}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                "test_seed": self.test_seed}
