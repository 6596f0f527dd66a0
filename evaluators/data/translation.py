"""Paired image-to-image translation data: (input A, target B) image pairs, embedded or from a local folder.

* ``skimage-edges`` (embedded default, nothing downloaded): scikit-image's bundled photographs
  (``skimage/data``, the same images as ``skimage-sr``) paired with their Canny edge maps drawn
  as black lines on white, the look of pix2pix's edges2shoes / edges2handbags inputs; A = edges,
  B = photo. Split by image (seeded), so validation photographs are never trained on.
* ``pairs-folder``: pix2pix's side-by-side layout (edges2shoes, facades, maps, ...): ``root/train``,
  ``root/val`` (and optional ``root/test``) of images holding A in the left half and B in the right
  half. Without ``val/`` the training images are split by image. ``direction="BtoA"`` swaps them;
  ``load_size`` resizes each half to a square first (pix2pix resizes 256 -> 286 and crops 256).

Training items are random aligned crops (``crop_size``) with flips and 90-degree rotations drawn
from torch's global RNG (``supernets``-free reuse of the SR pairs with scale 1); validation is a
fixed grid of ``crop_size`` crops per image (at most ``val_crops_per_image``). Images live in
memory as uint8 tensors; items are float in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import BaseDataModule
from .imagefolder import IMG_EXTENSIONS
from .registry import register_datamodule
from .superres import SKIMAGE_IMAGES, FixedPairs, RandomPatchPairs, load_rgb, skimage_data_dir, split_by_image

__all__ = ["TranslationDataModule", "SkimageEdgesDataModule", "SideBySideDataModule", "canny_edges", "split_side_by_side"]

DIRECTIONS = ("AtoB", "BtoA")
Pair = tuple[str, torch.Tensor, torch.Tensor]  # (name, A uint8 (3, H, W), B uint8 (3, H, W))


def canny_edges(img: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """uint8 (3, H, W) photo -> uint8 (3, H, W) edge map: Canny (scikit-image) on the grey image,
    edges black (0) on white (255), replicated to three channels."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    grey = rgb2gray(img.permute(1, 2, 0).numpy())
    edges = canny(grey, sigma=float(sigma))
    out = np.where(edges, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)[None].expand(3, -1, -1).contiguous()


def split_side_by_side(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, 2W) -> left half A, right half B."""
    w = img.shape[-1]
    if w < 2 or w % 2:
        raise ValueError(f"side-by-side image: expected an even width (A | B), found {w} px")
    return img[..., : w // 2], img[..., w // 2:]


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    x = F.interpolate(img[None].float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x[0].clamp(0, 255).round().to(torch.uint8)


class TranslationDataModule(BaseDataModule):
    """Base of the paired translation data modules: subclasses return (name, A, B) pairs in
    :meth:`_train_pairs` / :meth:`_val_pairs`; crops and loaders are made here.

    ``input_shape`` is the crop ``(3, crop_size, crop_size)``; ``num_classes`` is 0; the builder
    gets ``input_shape`` and ``out_channels`` (B's channels)."""

    task = "translation"
    name = "translation"

    def __init__(self, crop_size: int = 32, pairs_per_epoch: int = 256, val_crops_per_image: int = 8, augment: bool = True,
                 direction: str = "AtoB", seed: int = 0, batch_size: int = 16, num_workers: int = 0,
                 train_on_val: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_on_val=train_on_val)
        for nm, v in (("crop_size", crop_size), ("pairs_per_epoch", pairs_per_epoch), ("val_crops_per_image", val_crops_per_image)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{self.name}: {nm} must be a positive int, got {v!r}")
        if int(crop_size) % 4:
            raise ValueError(f"{self.name}: crop_size must be a multiple of 4 (the generators downsample twice), got {crop_size}")
        if direction not in DIRECTIONS:
            raise ValueError(f"{self.name}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.crop_size, self.pairs_per_epoch, self.val_crops_per_image = int(crop_size), int(pairs_per_epoch), int(val_crops_per_image)
        self.augment, self.direction = bool(augment), direction
        self.input_shape = (3, self.crop_size, self.crop_size)
        self.num_classes = 0
        self.train_names: list[str] = []
        self.val_names: list[str] = []

    def _train_pairs(self) -> list[Pair]:
        raise NotImplementedError

    def _val_pairs(self) -> list[Pair]:
        raise NotImplementedError

    def _oriented(self, pairs: Sequence[Pair]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(a, b) if self.direction == "AtoB" else (b, a) for _, a, b in pairs]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._train_pairs(), self._val_pairs()
        if self.train_on_val:
            train = [*train, *val]
        self.train_names, self.val_names = [n for n, _, _ in train], [n for n, _, _ in val]
        self.train_set = RandomPatchPairs(self._oriented(train), 1, self.crop_size, self.pairs_per_epoch, self.augment)
        self.val_set = FixedPairs(self._oriented(val), 1, self.crop_size, self.val_crops_per_image)
        if len(self.val_set) < 2:
            raise ValueError(f"{self.name}: the validation images give {len(self.val_set)} crop(s) of {self.crop_size} px; "
                             "FID needs at least 2 (use more or larger validation images, or a smaller crop_size)")

    def split_keys(self) -> dict[str, list]:
        self.setup("fit")
        return {"val": list(self.val_names)}

    def builder_kwargs(self) -> dict[str, object]:
        return {**super().builder_kwargs(), "out_channels": 3}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "crop_size": self.crop_size, "pairs_per_epoch": self.pairs_per_epoch,
                "direction": self.direction}


@register_datamodule("skimage-edges")
class SkimageEdgesDataModule(TranslationDataModule):
    """Canny edges -> photo pairs of scikit-image's bundled photographs (see the module docstring).

    ``images``: file names in ``skimage/data`` (default: the 16 of ``skimage-sr``); ``sigma``: the
    Canny smoothing; ``max_side``: images are downscaled (antialiased) so the longer side is at
    most this many pixels before edges are found (the defaults' 512 px photos at 128 px make
    32-px crops hold whole objects rather than flat patches)."""

    name = "skimage-edges"

    def __init__(self, images: Sequence[str] = SKIMAGE_IMAGES, val_fraction: float = 0.25, sigma: float = 2.0,
                 max_side: int = 128, crop_size: int = 32, pairs_per_epoch: int = 256, val_crops_per_image: int = 8,
                 augment: bool = True, direction: str = "AtoB", seed: int = 0, batch_size: int = 16, num_workers: int = 0,
                 train_on_val: bool = False) -> None:
        super().__init__(crop_size, pairs_per_epoch, val_crops_per_image, augment, direction, seed, batch_size, num_workers, train_on_val)
        folder = skimage_data_dir()
        missing = [n for n in images if not (folder / n).is_file()]
        if missing:
            raise ValueError(f"skimage-edges: images {missing} are not in the installed scikit-image ({folder})")
        if not int(max_side) >= crop_size:
            raise ValueError(f"skimage-edges: max_side must be >= crop_size ({crop_size}), got {max_side!r}")
        self.images, self.val_fraction, self.sigma, self.max_side = list(images), float(val_fraction), float(sigma), int(max_side)
        self._train_idx, self._val_idx = split_by_image(len(self.images), self.val_fraction, self.seed)

    def _load(self, idx: Sequence[int]) -> list[Pair]:
        import torch.nn.functional as F

        folder = skimage_data_dir()
        out = []
        for i in idx:
            photo = load_rgb(folder / self.images[i])
            h, w = photo.shape[-2:]
            if max(h, w) > self.max_side:
                f = self.max_side / max(h, w)
                size = (max(self.crop_size, round(h * f)), max(self.crop_size, round(w * f)))
                photo = F.interpolate(photo[None].float(), size=size, mode="bilinear", antialias=True,
                                      align_corners=False)[0].clamp(0, 255).round().to(torch.uint8)
            out.append((self.images[i], canny_edges(photo, self.sigma), photo))
        return out

    def _train_pairs(self) -> list[Pair]:
        return self._load(self._train_idx)

    def _val_pairs(self) -> list[Pair]:
        return self._load(self._val_idx)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "val_fraction": self.val_fraction, "sigma": self.sigma, "max_side": self.max_side}


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


@register_datamodule("pairs-folder")
class SideBySideDataModule(TranslationDataModule):
    """pix2pix side-by-side folders (A | B per image) from a local ``root`` (see the module docstring)."""

    name = "pairs-folder"

    def __init__(self, root: str | Path, load_size: int | None = None, val_fraction: float = 0.1, max_images: int | None = None,
                 crop_size: int = 32, pairs_per_epoch: int = 256, val_crops_per_image: int = 1, augment: bool = True,
                 direction: str = "AtoB", seed: int = 0, batch_size: int = 16, num_workers: int = 0,
                 train_on_val: bool = False) -> None:
        super().__init__(crop_size, pairs_per_epoch, val_crops_per_image, augment, direction, seed, batch_size, num_workers, train_on_val)
        self.root = Path(root)
        train_dir = self.root / "train"
        if not train_dir.is_dir():
            raise ValueError(f"pairs-folder: expected a folder {str(train_dir)!r} of side-by-side A|B images, found none")
        self.train_files = _folder_images(train_dir)[: max_images if max_images else None]
        if not self.train_files:
            raise ValueError(f"pairs-folder: {str(train_dir)!r} holds no images ({', '.join(sorted(IMG_EXTENSIONS))})")
        val_dir = self.root / "val"
        if val_dir.is_dir() and _folder_images(val_dir):
            self.val_files = _folder_images(val_dir)[: max_images if max_images else None]
        else:
            tr, va = split_by_image(len(self.train_files), float(val_fraction), self.seed)
            self.train_files, self.val_files = [self.train_files[i] for i in tr], [self.train_files[i] for i in va]
        if load_size is not None and (not isinstance(load_size, int) or load_size < crop_size):
            raise ValueError(f"pairs-folder: load_size must be an int >= crop_size ({crop_size}) or None, got {load_size!r}")
        self.load_size = load_size
        self.val_fraction = float(val_fraction)

    def _load(self, files: Sequence[Path]) -> list[Pair]:
        out = []
        for f in files:
            a, b = split_side_by_side(load_rgb(f))
            if self.load_size is not None:
                a, b = _resize(a, self.load_size), _resize(b, self.load_size)
            out.append((f.name, a.contiguous(), b.contiguous()))
        return out

    def _train_pairs(self) -> list[Pair]:
        return self._load(self.train_files)

    def _val_pairs(self) -> list[Pair]:
        return self._load(self.val_files)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "root": str(self.root), "load_size": self.load_size}
