"""Base classes of the data modules: ``BaseDataModule`` (any task) and ``ClassificationDataModule``."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .probe import check_loader_args


class BaseDataModule(pl.LightningDataModule):
    """A Lightning data module that knows its ``input_shape`` (C, H, W) and ``num_classes`` from
    construction on, because the model builder needs them before any data is loaded.

    Subclasses set ``input_shape``/``num_classes`` in ``__init__`` (cheaply) and ``train_set``/
    ``val_set`` (and ``test_set``, the held-out split nobody selects on) in :meth:`setup`, and say
    which samples each split holds through :meth:`split_keys`. Shuffling uses torch's global RNG, so
    the order of batches follows the evaluation seed (``pl.seed_everything``) while the train/val
    *split* follows this module's own ``seed``: every trial of a search then scores on the same
    validation images. ``train_on_val=True`` trains on train + validation (a final retrain); the
    validation loader still serves the validation images. ``task`` names the evaluator task
    (``evaluators.tasks``) that trains on this data; ``builder_kwargs()`` is what the model builder
    gets from the data (``supernets.build(space, arch, **dm.builder_kwargs())``).
    """

    name: str = "data"
    task: str = "classification"

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0, train_on_val: bool = False) -> None:
        super().__init__()
        check_loader_args(batch_size, num_workers)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.train_on_val = bool(train_on_val)
        self.input_shape: tuple[int, int, int] = (0, 0, 0)
        self.num_classes: int = 0
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def split_keys(self) -> dict[str, list]:
        """The members of the ``"val"`` and ``"test"`` splits (indices or relative paths), after setup.

        Subclasses override; the default names no members, so :func:`split_identity` reports sizes 0.
        """
        return {}

    def _loader(self, dataset: Dataset | None, shuffle: bool, batch_size: int | None = None, part: str = "") -> DataLoader:
        if dataset is None:
            self.setup("fit")
            dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[part or ("train" if shuffle else "val")]
            if dataset is None:
                raise ValueError(f"{self.name}: no {part or 'val'} split (a test split needs test_fraction > 0 or the data set's own test set)")
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False, part="test")

    def builder_kwargs(self) -> dict[str, object]:
        """Keyword arguments the model builder takes from the data."""
        return {"input_shape": tuple(self.input_shape), "num_classes": int(self.num_classes)}

    def describe(self) -> dict[str, object]:
        """A flat summary for experiment tracking."""
        return {
            "data": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "batch_size": self.batch_size,
            "split_seed": self.seed,
            "train_on_val": self.train_on_val,
        }


class ClassificationDataModule(BaseDataModule):
    """Base of the classification data modules (images -> class index)."""

    name = "classification"
    task = "classification"


class TransformDataset(Dataset):
    """Items ``(transform(images[i]), labels[i])`` from in-memory tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]
