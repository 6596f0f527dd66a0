"""Any ``root/<class_name>/<image>`` tree (the ImageFolder layout), classes indexed by sorted name.

If ``root`` holds ``train/`` and ``val/`` sub-trees those are used as the two splits (and ``test/``,
if present, as the test split); otherwise a
stratified ``val_fraction`` of the images (fixed by ``seed``) is held out. The held-out test split
is the ``test/`` sub-tree when there is one, else a stratified ``test_fraction`` carved (with its
own ``test_seed``) from the images the validation split is drawn from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ClassificationDataModule
from .splits import stratified_split
from .registry import register_datamodule
from .splits import carve_splits
from .transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    pil_to_tensor,
)

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def find_classes(root: Path, extensions: Sequence[str] = IMG_EXTENSIONS) -> list[str]:
    """Sorted names of the sub-folders of ``root`` that contain at least one image (recursively)."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and _images_under(d, extensions))


def _images_under(folder: Path, extensions: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(tuple(extensions)))
    return out


def make_samples(root: Path, classes: Sequence[str], extensions: Sequence[str] = IMG_EXTENSIONS) -> list[tuple[Path, int]]:
    """``(path, class_index)`` for every image under ``root/<class>`` for the given class list."""
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        folder = root / name
        if folder.is_dir():
            samples.extend((p, index) for p in _images_under(folder, extensions))
    return samples


class ConvertMode:
    """Convert a PIL image to ``"RGB"`` or ``"L"`` so every sample has the same channel count."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, img):
        return img if img.mode == self.mode else img.convert(self.mode)


class FolderDataset(Dataset):
    """Decode images lazily from disk and apply a PIL-then-tensor transform."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            img.load()
            x = self.transform(img)
        return x, torch.tensor(label, dtype=torch.long)


@register_datamodule("imagefolder")
class ImageFolderDataModule(ClassificationDataModule):
    """Images from a class-per-folder tree.

    ``input_shape`` and ``num_classes`` are known at construction: the classes are the folder names
    and the channel count comes from the first image's mode (grey modes give 1 channel, everything
    else is converted to RGB). ``image_size=None`` takes the shorter side of the first image.

    Training augmentation (``augment=True``) is the ImageNet recipe: random resized crop
    (``crop_scale``, aspect 3/4..4/3) plus horizontal flip; evaluation resizes the shorter side to
    ``image_size / eval_crop_ratio`` and takes the central ``image_size`` crop (0.875 = the usual
    256 -> 224). Normalisation uses the per-channel mean/std of up to 256 training images (evenly
    spaced, so deterministic) unless ``mean``/``std`` are given.
    """

    name = "imagefolder"

    def __init__(
        self,
        root: str | Path,
        image_size: int | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        eval_crop_ratio: float = 0.875,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        test_fraction: float = 0.2,
        test_seed: int = 0,
        train_on_val: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_on_val=train_on_val)
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"imagefolder: root {str(root)!r} is not a directory; expected root/<class_name>/<image> files")
        if not 0.0 < float(eval_crop_ratio) <= 1.0:
            raise ValueError(f"imagefolder: eval_crop_ratio must be in (0, 1], got {eval_crop_ratio}")
        self.root = root
        self.extensions = tuple(e.lower() for e in extensions)
        train_dir, val_dir = root / "train", root / "val"
        self.split_dirs = train_dir.is_dir() and val_dir.is_dir()
        self.train_root = train_dir if self.split_dirs else root
        self.classes = find_classes(self.train_root, self.extensions)
        if not self.classes:
            raise ValueError(
                f"imagefolder: no class folders with images ({', '.join(self.extensions)}) under {str(self.train_root)!r}; "
                "expected root/<class_name>/<image> (or root/train/... and root/val/...)"
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.val_fraction = float(val_fraction)
        self.test_dir = root / "test" if self.split_dirs and (root / "test").is_dir() else None
        self.test_fraction = 0.0 if self.test_dir is not None else float(test_fraction)
        self.test_seed = int(test_seed)
        self.augment = bool(augment)
        self.crop_scale = tuple(crop_scale)
        self.eval_crop_ratio = float(eval_crop_ratio)
        self.mean, self.std = mean, std

        from PIL import Image

        first = _images_under(self.train_root / self.classes[0], self.extensions)[0]
        with Image.open(first) as img:  # header only: mode and size need no decoding
            self.pil_mode = "L" if img.mode in _GREY_MODES else "RGB"
            size = min(img.size)
        self.image_size = int(image_size) if image_size is not None else int(size)
        if self.image_size < 1:
            raise ValueError(f"imagefolder: image_size must be a positive integer, got {image_size}")
        self.input_shape = (1 if self.pil_mode == "L" else 3, self.image_size, self.image_size)
        self.num_classes = len(self.classes)
        self.train_samples: list[tuple[Path, int]] = []
        self.val_samples: list[tuple[Path, int]] = []
        self.test_samples: list[tuple[Path, int]] = []

    # -- transforms
    def _eval_pil(self) -> list:
        resize = max(self.image_size, round(self.image_size / self.eval_crop_ratio))
        return [ConvertMode(self.pil_mode), Resize(resize), pil_to_tensor, CenterCrop(self.image_size)]

    def _train_tf(self, norm: Normalize) -> Compose:
        if not self.augment:
            return Compose([*self._eval_pil(), norm])
        return Compose(
            [
                ConvertMode(self.pil_mode),
                RandomResizedCrop(self.image_size, scale=self.crop_scale),
                pil_to_tensor,
                RandomHorizontalFlip(0.5),
                norm,
            ]
        )

    def _estimate_stats(self, samples: Sequence[tuple[Path, int]], limit: int = 256) -> tuple[list[float], list[float]]:
        picks = np.unique(np.linspace(0, len(samples) - 1, num=min(limit, len(samples))).round().astype(int))
        ds = FolderDataset([samples[i] for i in picks], Compose(self._eval_pil()))
        x = torch.stack([ds[i][0] for i in range(len(ds))]).double()
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)
        return mean.tolist(), std.tolist()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        test: list[tuple[Path, int]] = []
        if self.split_dirs:
            train = make_samples(self.train_root, self.classes, self.extensions)
            val = self._sub_tree("val")
            if self.test_fraction > 0:
                labels = np.array([label for _, label in train])
                tr, te = stratified_split(labels, self.test_fraction, self.test_seed)
                train, test = [train[i] for i in tr], [train[i] for i in te]
        else:
            samples = make_samples(self.root, self.classes, self.extensions)
            labels = np.array([label for _, label in samples])
            tr, va, te = carve_splits(labels, self.val_fraction, self.test_fraction, self.seed, self.test_seed)
            train, val, test = [samples[i] for i in tr], [samples[i] for i in va], [samples[i] for i in te]
        if self.test_dir is not None:
            test = self._sub_tree("test")
        self.train_samples, self.val_samples, self.test_samples = train, val, test
        if self.mean is None or self.std is None:
            self.mean, self.std = self._estimate_stats(train)
        norm = Normalize(self.mean, self.std)
        self.train_set = FolderDataset(train + val if self.train_on_val else train, self._train_tf(norm))
        self.val_set = FolderDataset(val, Compose([*self._eval_pil(), norm]))
        if test:
            self.test_set = FolderDataset(test, Compose([*self._eval_pil(), norm]))

    def _sub_tree(self, name: str) -> list[tuple[Path, int]]:
        """The samples of ``root/<name>/<class>/...`` for the training classes (val/ or test/)."""
        folder = self.root / name
        samples = make_samples(folder, self.classes, self.extensions)
        extra = sorted(set(find_classes(folder, self.extensions)) - set(self.classes))
        if extra:
            raise ValueError(f"imagefolder: {name}/ has classes missing from train/: {extra}")
        if not samples:
            raise ValueError(f"imagefolder: {str(folder)!r} holds no images of the training classes")
        return samples

    def split_keys(self) -> dict[str, list]:
        self.setup()
        rel = lambda samples: [str(p.relative_to(self.root)) for p, _ in samples]  # noqa: E731
        return {"val": rel(self.val_samples), "test": rel(self.test_samples)}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "root": str(self.root), "augment": self.augment, "image_size": self.image_size,
                "test_fraction": self.test_fraction, "test_dir": self.test_dir is not None}
