"""What a trained model expects as input, as data: recorded in an export's ``arch.json`` so the
exported model can be fed raw inputs without the data module that trained it.

The evaluation-time pipeline of every built-in data set ends in ``x * scale`` then a per-channel
``(x - mean) / std``; augmentation (random crops, flips) is training-only and not recorded.
``raw_input`` says in words what "raw" means for the set (a digits image of values 0..16, a
CIFAR uint8 image, a resized and centre-cropped folder image).
"""

from __future__ import annotations

from typing import Any


def _as_list(v: Any, channels: int) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)] * channels
    return [float(x) for x in v]


def describe_preprocessing(dm) -> dict[str, Any] | None:
    """``{raw_input, scale, mean, std, input_shape, class_names}`` of a set-up classification data
    module; ``None`` for other tasks (their exports record no preprocessing)."""
    from .base import ClassificationDataModule

    if not isinstance(dm, ClassificationDataModule):
        return None
    if getattr(dm, "mean", None) is None or getattr(dm, "std", None) is None:
        dm.setup("fit")  # the statistics come from the training split
    channels = int(dm.input_shape[0])
    name = getattr(dm, "name", type(dm).__name__)
    classes = [str(i) for i in range(int(dm.num_classes))]
    scale, raw = 1.0, "tensors of input_shape as the data module yields them before normalisation"
    if name == "digits":
        scale, raw = 1.0 / 16.0, "sklearn.datasets.load_digits().images: 8x8 pixel values 0..16, as (1, 8, 8)"
    elif name in ("cifar10", "cifar100"):
        scale, raw = 1.0 / 255.0, "uint8-range (3, 32, 32) images as in the CIFAR batches (values 0..255)"
        classes = _cifar_names(dm) or classes
    elif name == "imagefolder":
        scale = 1.0 / 255.0
        raw = (f"images converted to {dm.pil_mode}, shorter side resized to {max(dm.image_size, round(dm.image_size / dm.eval_crop_ratio))}, "
               f"centre-cropped to {dm.image_size}x{dm.image_size}, as (C, H, W) values 0..255")
        classes = list(dm.classes)
    mean = _as_list(dm.mean, channels) if getattr(dm, "mean", None) is not None else [0.0] * channels
    std = _as_list(dm.std, channels) if getattr(dm, "std", None) is not None else [1.0] * channels
    return {"raw_input": raw, "scale": scale, "mean": mean, "std": std, "input_shape": [int(x) for x in dm.input_shape],
            "class_names": classes, "data": name}


def _cifar_names(dm) -> list[str] | None:
    from .cifar import load_batch

    meta = dm.root / dm.meta_file
    if not meta.is_file():
        return None
    names = load_batch(meta).get(dm.meta_names_key)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None
