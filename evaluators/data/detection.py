"""Detection data: the base data module and the embedded default ``digits-detection``.

An item is ``(image, target)``: a ``(C, H, W)`` float tensor and ``{"boxes": (N, 4) float xyxy in
pixels of that image, "labels": (N,) int64 in [0, num_classes)}``; batches stack the images (every
data module here yields one fixed image size) and keep the targets as a list.

``digits-detection`` is built from scikit-learn's embedded 8x8 digits (real handwriting, shipped
inside the installed package, nothing downloaded): each canvas holds 1..``max_objects`` digits,
each resized to a random side in [``min_size``, ``max_size``] and placed at a random position
with limited overlap. Boxes are the tight extent of the digit's ink in the resized patch (pixels
above ``ink_threshold`` of the patch maximum), so they are exact by construction. The digit
*instances* used for training and validation canvases are disjoint (a stratified split of the
1797 digits), and everything is a pure function of ``seed``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .splits import stratified_split
from .registry import register_datamodule

Target = dict[str, torch.Tensor]


def collate_detection(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack images (same size), keep per-image targets as a list."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


def make_target(boxes: Any, labels: Any) -> Target:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
    if len(b) != len(y):
        raise ValueError(f"boxes and labels differ in length: {len(b)} vs {len(y)}")
    return {"boxes": b, "labels": y}


def content_key(index: int, image: torch.Tensor, target: Target) -> str:
    """``"<index>:<sha256 of the image's bytes, boxes and labels>"`` (16 hex digits)."""
    h = hashlib.sha256()
    for t in (image, target["boxes"], target["labels"]):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return f"{index}:{h.hexdigest()[:16]}"


class DetectionDataset(Dataset):
    """In-memory images ``(N, C, H, W)`` and their targets."""

    def __init__(self, images: torch.Tensor, targets: list[Target]) -> None:
        if len(images) != len(targets):
            raise ValueError(f"images and targets differ in length: {len(images)} vs {len(targets)}")
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        return self.images[i], self.targets[i]


class DetectionDataModule(pl.LightningDataModule):
    """Knows ``input_shape`` (C, H, W), ``num_classes`` (object classes, no background) and
    ``class_names`` from construction on, because the detector builder needs them first.

    ``task = "detection"`` is how ``evaluators.evaluate`` tells it apart from a classification
    data module. The split follows this module's ``seed``; batch order follows the evaluation seed.
    """

    name = "detection"
    task = "detection"

    def __init__(self, batch_size: int = 16, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.input_shape: tuple[int, int, int] = (0, 0, 0)
        self.num_classes = 0
        self.class_names: list[str] = []
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _loader(self, train: bool) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return DataLoader(self.train_set if train else self.val_set, batch_size=self.batch_size, shuffle=train,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=collate_detection, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(False)

    def split_keys(self) -> dict[str, list]:
        """The validation split's members (``split_identity`` fingerprints them; the engine records
        the fingerprint on the search's parent run and refuses to resume onto another split).

        In-memory images (the generated canvases) are named by their *content*: index, image bytes,
        boxes and labels, so any option that changes what is validated on (seed, canvas, sizes,
        object count, image count) changes the fingerprint. File-backed modules override this with
        relative file paths. No detection module has a held-out test split: ``"test"`` is empty.
        """
        self.setup("fit")
        val = self.val_set
        if not isinstance(val, DetectionDataset):
            raise TypeError(f"{self.name}: split_keys needs an in-memory DetectionDataset or an override, found {type(val).__name__}")
        return {"val": [content_key(i, img, t) for i, (img, t) in enumerate(zip(val.images, val.targets))], "test": []}

    def describe(self) -> dict[str, object]:
        return {"data": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "batch_size": self.batch_size, "split_seed": self.seed}


def _iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    if len(others) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def digit_canvases(digits: np.ndarray, labels: np.ndarray, n_images: int, rng: np.random.Generator, *, canvas: int,
                   max_objects: int, min_size: int, max_size: int, max_overlap: float = 0.1,
                   ink_threshold: float = 0.1) -> tuple[np.ndarray, list[Target]]:
    """``n_images`` canvases ``(n, 1, canvas, canvas)`` in [0, 1] with their exact targets.

    ``digits`` are ``(N, 8, 8)`` in [0, 1]. A digit whose placement overlaps an earlier one by
    more than ``max_overlap`` IoU (after 30 tries) is left out, so an image may hold fewer objects.
    """
    out = np.zeros((n_images, 1, canvas, canvas), dtype=np.float32)
    targets: list[Target] = []
    for i in range(n_images):
        boxes: list[list[float]] = []
        labs: list[int] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            k = int(rng.integers(len(digits)))
            side = int(rng.integers(min_size, max_size + 1))
            patch = np.asarray(Image.fromarray(digits[k].astype(np.float32), mode="F").resize((side, side), Image.BILINEAR))
            patch = np.clip(patch, 0.0, 1.0)
            ys, xs = np.nonzero(patch > ink_threshold * max(float(patch.max()), 1e-6))
            if len(xs) == 0:
                continue
            for _try in range(30):
                x0, y0 = int(rng.integers(0, canvas - side + 1)), int(rng.integers(0, canvas - side + 1))
                box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], dtype=np.float64)
                if not len(boxes) or _iou_one(box, np.array(boxes)).max() <= max_overlap:
                    region = out[i, 0, y0:y0 + side, x0:x0 + side]
                    np.maximum(region, patch, out=region)
                    boxes.append(box.tolist())
                    labs.append(int(labels[k]))
                    break
        targets.append(make_target(boxes, labs))
    return out, targets


@register_datamodule("digits-detection")
class DigitsDetectionDataModule(DetectionDataModule):
    """Scikit-learn digits on a ``canvas`` x ``canvas`` grey image: 10 classes, exact boxes.

    Defaults (64 px canvas, 1-3 digits of 10-40 px) put objects on the finest two levels of the
    ``detector`` space's FPN (strides 4, 8, 16), so per-level masks have work on more than one
    level. Pixel values stay in [0, 1] (background 0).
    """

    name = "digits-detection"

    def __init__(self, train_images: int = 512, val_images: int = 128, canvas: int = 64, max_objects: int = 3,
                 min_size: int = 10, max_size: int = 40, seed: int = 0, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        for key, v, lo in (("train_images", train_images, 1), ("val_images", val_images, 1), ("max_objects", max_objects, 1),
                           ("min_size", min_size, 4)):
            if int(v) < lo:
                raise ValueError(f"digits-detection: {key} must be an integer >= {lo}, got {v}")
        if not int(min_size) <= int(max_size) <= int(canvas):
            raise ValueError(f"digits-detection: min_size <= max_size <= canvas must hold, got {min_size}, {max_size}, {canvas}")
        self.train_images, self.val_images = int(train_images), int(val_images)
        self.canvas, self.max_objects = int(canvas), int(max_objects)
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.input_shape = (1, self.canvas, self.canvas)
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = bunch.images.astype(np.float32) / 16.0
        y = bunch.target.astype(np.int64)
        tr, va = stratified_split(y, 0.25, self.seed)
        rng = np.random.default_rng(self.seed)
        kw = dict(canvas=self.canvas, max_objects=self.max_objects, min_size=self.min_size, max_size=self.max_size)
        xt, tt = digit_canvases(x[tr], y[tr], self.train_images, rng, **kw)
        xv, tv = digit_canvases(x[va], y[va], self.val_images, rng, **kw)
        self.train_set = DetectionDataset(torch.from_numpy(xt), tt)
        self.val_set = DetectionDataset(torch.from_numpy(xv), tv)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "train_images": self.train_images, "val_images": self.val_images,
                "max_objects": self.max_objects, "min_size": self.min_size, "max_size": self.max_size}
