"""The digits data set's arrays, option checks and split, without torch: what ``DigitsDataModule``
builds its tensors from and what the search's data check (``probe``) reads instead of importing
Lightning."""

from __future__ import annotations

from typing import Any

import numpy as np

from .probe import DataProbe, check_loader_args
from .splits import carve_splits, identity_of

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """The two split fractions as floats, or the data module's one-line error."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"digits: val_fraction must be in (0, 1), got {val_fraction}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"digits: test_fraction must be in [0, 1), got {test_fraction}")
    return float(val_fraction), float(test_fraction)


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 8, 8)`` float32 in [0, 1] (raw 0..16 scaled) and int64 labels, as scikit-learn ships them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def probe(val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64, num_workers: int = 0,
          test_fraction: float = 0.2, test_seed: int = 0, train_on_val: bool = False) -> DataProbe:
    """``DigitsDataModule(**same options)`` set up, as the search's data check reads it (the
    signature is the module's: a contract test keeps them equal)."""
    check_loader_args(batch_size, num_workers)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    _, y = load_arrays()
    _, val_idx, test_idx = carve_splits(y, val_fraction, test_fraction, int(seed), int(test_seed))
    keys: dict[str, Any] = {"val": val_idx.tolist(), "test": test_idx.tolist()}
    return DataProbe(INPUT_SHAPE, NUM_CLASSES, {"input_shape": INPUT_SHAPE, "num_classes": NUM_CLASSES}, identity_of(int(seed), keys))
