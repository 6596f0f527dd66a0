"""CIFAR-10 / CIFAR-100 from the official "python version" pickle batches in a local directory.

Format (https://www.cs.toronto.edu/~kriz/cifar.html): each batch file is a pickled dict with
``b"data"`` (uint8, N x 3072, each row the 1024 red, then green, then blue values of a 32x32 image in
row-major order) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"``/``b"coarse_labels"``
(CIFAR-100). CIFAR-10 ships ``data_batch_1..5``, ``test_batch`` and ``batches.meta``; CIFAR-100 ships
``train``, ``test`` and ``meta``. Nothing is downloaded: point ``root`` at the extracted folder (or at
its parent, which holds ``cifar-10-batches-py`` / ``cifar-100-python``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import ClassificationDataModule, TransformDataset
from .splits import stratified_split
from .registry import register_datamodule
from .transforms import cifar_eval_transform, cifar_train_transform

# A pickle can run arbitrary code; the official batches only need numpy arrays and builtins, so the
# loader refuses every other global.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which a CIFAR batch never needs")
        return super().find_class(module, name)


def load_batch(path: str | Path) -> dict:
    """Unpickle one official batch file; keys are returned as ``str`` whatever the pickle used."""
    with open(path, "rb") as f:
        raw = _BatchUnpickler(f, encoding="bytes").load()
    if not isinstance(raw, dict):
        raise ValueError(f"CIFAR batch {path} holds a {type(raw).__name__}, expected a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _labels(batch: dict, keys: Sequence[str], path: Path) -> np.ndarray:
    for key in keys:
        if key in batch:
            return np.asarray(batch[key], dtype=np.int64)
    raise ValueError(f"CIFAR batch {path} has none of the label keys {list(keys)}; found {sorted(batch)}")


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"CIFAR batch {path}: 'data' must be N x 3072 uint8, found shape {data.shape}")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images scaled to [0, 1], in float64 chunks."""
    n, c = images.shape[:2]
    s = np.zeros(c)
    s2 = np.zeros(c)
    for start in range(0, n, chunk):
        part = images[start : start + chunk].astype(np.float64) / 255.0
        s += part.sum(axis=(0, 2, 3))
        s2 += (part**2).sum(axis=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


class _CifarDataModule(ClassificationDataModule):
    """Shared CIFAR logic; subclasses fix the folder name, class count and label key."""

    subdir: str = ""
    default_classes: int = 10
    meta_file: str = ""
    meta_names_key: str = ""

    def __init__(
        self,
        root: str | Path,
        augment: bool = True,
        val_fraction: float | None = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        train_on_val: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_on_val=train_on_val)
        self.root = self._resolve_root(Path(root))
        self.train_files, self.test_files = self._find_files(self.root)
        self.augment = bool(augment)
        self.val_fraction = None if val_fraction is None else float(val_fraction)
        self.mean, self.std = mean, std
        self.input_shape = (3, 32, 32)
        self.num_classes = self._read_num_classes()
        self.val_indices: np.ndarray | None = None  # into the concatenated training batches
        self.n_test = 0

    # -- locating files (cheap, at construction, so a wrong path fails before any training)
    def _resolve_root(self, root: Path) -> Path:
        if not root.is_dir():
            raise ValueError(f"{self.name}: root {str(root)!r} is not a directory; {self._expected()}")
        nested = root / self.subdir
        if nested.is_dir() and not self._has_layout(root):
            return nested
        return root

    @staticmethod
    def _has_layout(root: Path) -> bool:
        return (root / "data_batch_1").is_file() or (root / "train").is_file()

    def _expected(self) -> str:
        return (
            f"expected the official python batches there (data_batch_1..5 + test_batch, or train + test; "
            f"or a '{self.subdir}' folder holding them)"
        )

    def _find_files(self, root: Path) -> tuple[list[Path], list[Path]]:
        batches = sorted(root.glob("data_batch_*"), key=lambda p: p.name)
        if batches and (root / "test_batch").is_file():
            return batches, [root / "test_batch"]
        if (root / "train").is_file() and (root / "test").is_file():
            return [root / "train"], [root / "test"]
        found = sorted(p.name for p in root.iterdir())[:8]
        raise ValueError(f"{self.name}: root {str(root)!r} lacks the batch files; {self._expected()}; found {found}")

    def _read_num_classes(self) -> int:
        meta = self.root / self.meta_file
        if meta.is_file():
            names = load_batch(meta).get(self.meta_names_key)
            if names:
                return len(names)
        return self.default_classes

    # -- loading
    def _label_keys(self) -> Sequence[str]:
        return ("labels", "fine_labels")

    def _load(self, files: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for path in files:
            batch = load_batch(path)
            x, y = _images(batch, path), _labels(batch, self._label_keys(), path)
            if len(x) != len(y):
                raise ValueError(f"CIFAR batch {path}: {len(x)} images but {len(y)} labels")
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"{self.name}: labels must lie in [0, {self.num_classes}), found [{y.min()}, {y.max()}]")
        return x, y

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x_train, y_train = self._load(self.train_files)
        x_test, y_test = self._load(self.test_files)
        if self.val_fraction is None:  # legacy opt-in: validate on the test batch (then there is no unseen test split)
            x_val, y_val, x_test, y_test = x_test, y_test, None, None
            self.val_indices = None
        else:  # hold out part of the training set, so a search never selects on the test set
            tr, va = stratified_split(y_train, self.val_fraction, self.seed)
            self.val_indices = va
            x_fit, y_fit = (x_train, y_train) if self.train_on_val else (x_train[tr], y_train[tr])
            x_train, y_train, x_val, y_val = x_train[tr], y_train[tr], x_train[va], y_train[va]
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(x_train)
        if self.val_fraction is not None:
            x_train, y_train = x_fit, y_fit
        eval_tf = cifar_eval_transform(self.mean, self.std)
        train_tf = cifar_train_transform(self.mean, self.std) if self.augment else eval_tf
        self.train_set = TransformDataset(torch.from_numpy(x_train), torch.from_numpy(y_train), train_tf)
        self.val_set = TransformDataset(torch.from_numpy(x_val), torch.from_numpy(y_val), eval_tf)
        self.n_test = 0 if x_test is None else len(x_test)
        if x_test is not None:
            self.test_set = TransformDataset(torch.from_numpy(x_test), torch.from_numpy(y_test), eval_tf)

    def split_keys(self) -> dict[str, list]:
        self.setup()
        if self.val_indices is None:
            return {"val": [f"test:{i}" for i in range(len(self.val_set))], "test": []}
        return {"val": self.val_indices.tolist(), "test": [f"test:{i}" for i in range(self.n_test)]}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "root": str(self.root), "augment": self.augment, "val_fraction": self.val_fraction}


@register_datamodule("cifar10")
class Cifar10DataModule(_CifarDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50k train / 10k test 32x32 colour images, 10 classes.

    Validation is a stratified ``val_fraction`` (default 0.1) of the training batches, fixed by
    ``seed``; the test batch is the held-out test split, never seen by a search.
    ``val_fraction=None`` validates on the test batch instead (then there is no test split).
    Normalisation uses the per-channel mean/std of the training images unless ``mean``/``std`` are given.
    """

    name = "cifar10"
    subdir = "cifar-10-batches-py"
    default_classes = 10
    meta_file = "batches.meta"
    meta_names_key = "label_names"


@register_datamodule("cifar100")
class Cifar100DataModule(_CifarDataModule):
    """CIFAR-100: 100 fine classes (``label_mode="fine"``) or 20 superclasses (``"coarse"``)."""

    name = "cifar100"
    subdir = "cifar-100-python"
    default_classes = 100
    meta_file = "meta"
    meta_names_key = "fine_label_names"

    def __init__(
        self,
        root: str | Path,
        augment: bool = True,
        val_fraction: float | None = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        label_mode: str = "fine",
        train_on_val: bool = False,
    ) -> None:
        if label_mode not in ("fine", "coarse"):
            raise ValueError(f"cifar100: label_mode must be 'fine' or 'coarse', got {label_mode!r}")
        self.label_mode = label_mode
        if label_mode == "coarse":
            self.default_classes, self.meta_names_key = 20, "coarse_label_names"
        super().__init__(root, augment, val_fraction, seed, batch_size, num_workers, mean, std, train_on_val)

    def _label_keys(self) -> Sequence[str]:
        return (f"{self.label_mode}_labels",) if self.label_mode == "coarse" else ("fine_labels", "labels")
