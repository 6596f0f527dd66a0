"""Super-resolution data: bicubic LR/HR patch pairs from HR images, embedded or from local folders.

* ``skimage-sr``: the photographs shipped inside scikit-image (``skimage/data/*.png|jpg``, read from
  the installed package; nothing is downloaded), split *by image* into train / validation.
* ``div2k``: the DIV2K layout (``DIV2K_train_HR/``, ``DIV2K_valid_HR/``; the official
  ``DIV2K_{train,valid}_LR_bicubic/X{s}/<id>x{s}.png`` are used when present, else LR is made here).
* ``set5``, ``set14``, ``b100``, ``urban100`` (and ``srfolder`` for any folder of HR images): a
  benchmark folder (``<root>/HR/*`` or ``<root>/*``, or Huang et al.'s ``image_SRF_<s>/*_HR.*``)
  scored on whole images; training images come from ``train_root`` (a DIV2K root or an HR folder)
  or, without one, from a by-image split of the folder itself.

LR images are the bicubic (antialiased) ``1/scale`` downsampling of the HR image after cropping it
to a multiple of the scale, rounded to 8 bits as a saved LR image would be. Training items are
random aligned crops (LR ``patch_size``, HR ``patch_size * scale``) with flips and 90-degree
rotations, drawn from torch's global RNG (so they follow the evaluation seed); ``patches_per_epoch``
sets the epoch length. Validation is fixed: a grid of ``val_patch_size`` crops per image
(``val_mode="patches"``, batched) or whole images (``"full"``, batch size 1, the benchmark protocol).
Images live in memory as uint8 tensors (``max_images`` caps a large folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .base import BaseDataModule
from .imagefolder import IMG_EXTENSIONS
from .registry import register_datamodule

SKIMAGE_IMAGES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "moon.png", "rocket.jpg",
                  "motorcycle_left.png", "ihc.png", "brick.png", "grass.png", "gravel.png", "page.png", "text.png",
                  "clock_motion.png", "hubble_deep_field.jpg")
VAL_MODES = ("patches", "full")


# ---------------------------------------------------------------------------------------------
# images and LR generation
# ---------------------------------------------------------------------------------------------

def load_rgb(path: str | Path) -> torch.Tensor:
    """An image file as a uint8 (3, H, W) tensor (grey images are replicated to three channels)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def modcrop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so height and width are multiples of ``scale``."""
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, H/s, W/s): antialiased bicubic, rounded to 8 bits."""
    x = hr[None].float() / 255.0
    lr = F.interpolate(x, scale_factor=1.0 / scale, mode="bicubic", antialias=True, align_corners=False)
    return (lr[0].clamp(0, 1) * 255.0).round().to(torch.uint8)


def make_pair(hr: torch.Tensor, scale: int, lr: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    hr = modcrop(hr, scale)
    if lr is None:
        lr = bicubic_downsample(hr, scale)
    elif tuple(lr.shape[-2:]) != (hr.shape[-2] // scale, hr.shape[-1] // scale):
        raise ValueError(f"LR image of shape {tuple(lr.shape[-2:])} does not match HR {tuple(hr.shape[-2:])} at x{scale}")
    return lr, hr


def skimage_data_dir() -> Path:
    """The folder of scikit-image's bundled sample images (inside the installed package)."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------

class RandomPatchPairs(Dataset):
    """``length`` random aligned (LR, HR) crops, float in [0, 1], with flips / rot90 if ``augment``."""

    def __init__(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], scale: int, patch_size: int, length: int,
                 augment: bool = True) -> None:
        self.pairs = [p for p in pairs if min(p[0].shape[-2:]) >= patch_size]
        if not self.pairs:
            raise ValueError(f"no training image has an LR side of at least patch_size={patch_size} px")
        self.scale, self.patch, self.length, self.augment = int(scale), int(patch_size), int(length), bool(augment)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.pairs[int(torch.randint(len(self.pairs), (1,)))]
        p, s = self.patch, self.scale
        y = int(torch.randint(lr.shape[-2] - p + 1, (1,)))
        x = int(torch.randint(lr.shape[-1] - p + 1, (1,)))
        lp = lr[:, y : y + p, x : x + p]
        hp = hr[:, y * s : (y + p) * s, x * s : (x + p) * s]
        if self.augment:
            if float(torch.rand(())) < 0.5:
                lp, hp = lp.flip(-1), hp.flip(-1)
            if float(torch.rand(())) < 0.5:
                lp, hp = lp.flip(-2), hp.flip(-2)
            if float(torch.rand(())) < 0.5:
                lp, hp = lp.transpose(-1, -2), hp.transpose(-1, -2)
        return lp.float() / 255.0, hp.float() / 255.0


class FixedPairs(Dataset):
    """Fixed (LR, HR) items: whole images, or a grid of ``patch_size`` crops per image (at most ``per_image``)."""

    def __init__(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], scale: int, patch_size: int | None = None,
                 per_image: int = 8) -> None:
        self.items: list[tuple[torch.Tensor, torch.Tensor]] = []
        s = int(scale)
        for lr, hr in pairs:
            if patch_size is None:
                self.items.append((lr, hr))
                continue
            p = int(patch_size)
            h, w = lr.shape[-2:]
            if min(h, w) < p:
                continue
            ys, xs = _grid(h, p), _grid(w, p)
            coords = [(y, x) for y in ys for x in xs]
            step = max(1, len(coords) // per_image)
            for y, x in coords[::step][:per_image]:
                self.items.append((lr[:, y : y + p, x : x + p], hr[:, y * s : (y + p) * s, x * s : (x + p) * s]))
        if not self.items:
            raise ValueError(f"no validation item: every validation image's LR side is below val_patch_size={patch_size}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.items[i]
        return lr.float() / 255.0, hr.float() / 255.0


def _grid(n: int, p: int) -> list[int]:
    """Non-overlapping crop offsets along a side of ``n`` pixels, centred."""
    k = n // p
    off = (n - k * p) // 2
    return [off + i * p for i in range(k)]


def split_by_image(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val) of a seeded split of ``n`` images (at least one image on each side)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), found {val_fraction}")
    if n < 2:
        raise ValueError(f"a split by image needs at least 2 images, found {n}")
    order = np.random.default_rng(int(seed)).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


# ---------------------------------------------------------------------------------------------
# data modules
# ---------------------------------------------------------------------------------------------

class SuperResDataModule(BaseDataModule):
    """Base of the SR data modules: subclasses return HR (and optional official LR) images in
    :meth:`_train_images` / :meth:`_val_images`; pairs, patches and loaders are made here.

    ``input_shape`` is the LR training patch ``(3, patch_size, patch_size)`` (the models are fully
    convolutional; it sizes the cost estimate), ``num_classes`` is 0, ``scale`` goes to the builder.
    """

    task = "superres"
    name = "superres"
    default_val_mode = "patches"

    def __init__(self, scale: int = 2, patch_size: int = 24, patches_per_epoch: int = 256, val_mode: str | None = None,
                 val_patch_size: int = 48, val_patches_per_image: int = 8, augment: bool = True, seed: int = 0,
                 batch_size: int = 16, num_workers: int = 0, max_images: int | None = None) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if int(scale) not in (2, 3, 4, 8):
            raise ValueError(f"{self.name}: scale must be 2, 3, 4 or 8, got {scale!r}")
        for nm, v in (("patch_size", patch_size), ("patches_per_epoch", patches_per_epoch), ("val_patch_size", val_patch_size),
                      ("val_patches_per_image", val_patches_per_image)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{self.name}: {nm} must be a positive int, got {v!r}")
        val_mode = val_mode or self.default_val_mode
        if val_mode not in VAL_MODES:
            raise ValueError(f"{self.name}: val_mode must be one of {', '.join(VAL_MODES)}, got {val_mode!r}")
        if max_images is not None and int(max_images) < 1:
            raise ValueError(f"{self.name}: max_images must be a positive int or None, got {max_images!r}")
        self.scale, self.patch_size, self.patches_per_epoch = int(scale), int(patch_size), int(patches_per_epoch)
        self.val_mode, self.val_patch_size, self.val_patches_per_image = val_mode, int(val_patch_size), int(val_patches_per_image)
        self.augment, self.max_images = bool(augment), max_images
        self.input_shape = (3, self.patch_size, self.patch_size)
        self.num_classes = 0
        self.train_names: list[str] = []
        self.val_names: list[str] = []

    # subclasses: lists of (name, HR uint8 tensor, LR uint8 tensor or None)
    def _train_images(self) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError

    def _val_images(self) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError

    def _pairs(self, images) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [make_pair(hr, self.scale, lr) for _, hr, lr in images]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._train_images(), self._val_images()
        self.train_names, self.val_names = [n for n, _, _ in train], [n for n, _, _ in val]
        self.train_set = RandomPatchPairs(self._pairs(train), self.scale, self.patch_size, self.patches_per_epoch, self.augment)
        patch = self.val_patch_size if self.val_mode == "patches" else None
        self.val_set = FixedPairs(self._pairs(val), self.scale, patch, self.val_patches_per_image)

    def split_keys(self) -> dict[str, list]:
        """Validation images by name, each with the protocol it is scored under (whole image, or
        the size and count of its crops), since both decide what a PSNR is measured on; there is
        no held-out test split. ``split_identity`` fingerprints them for the search's resume check."""
        self.setup("fit")
        how = "full" if self.val_mode == "full" else f"patches{self.val_patch_size}x{self.val_patches_per_image}"
        return {"val": [f"{n}|{how}" for n in self.val_names], "test": []}

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, batch_size=1 if self.val_mode == "full" else None)

    def builder_kwargs(self) -> dict[str, object]:
        return {**super().builder_kwargs(), "scale": self.scale}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "scale": self.scale, "patch_size": self.patch_size, "val_mode": self.val_mode,
                "patches_per_epoch": self.patches_per_epoch}


@register_datamodule("skimage-sr")
class SkimageSRDataModule(SuperResDataModule):
    """scikit-image's bundled photographs (``images``: file names in ``skimage/data``), split by image.

    Default: 16 photographs and textures (astronaut, camera, chelsea, coffee, coins, moon, rocket,
    motorcycle, IHC, brick, grass, gravel, page, text, clock, Hubble deep field), 25 % of them held out
    for validation (seeded). Grey images are replicated to RGB.
    """

    name = "skimage-sr"

    def __init__(self, scale: int = 2, images: Sequence[str] = SKIMAGE_IMAGES, val_fraction: float = 0.25,
                 patch_size: int = 24, patches_per_epoch: int = 256, val_mode: str | None = None, val_patch_size: int = 48,
                 val_patches_per_image: int = 8, augment: bool = True, seed: int = 0, batch_size: int = 16,
                 num_workers: int = 0) -> None:
        super().__init__(scale, patch_size, patches_per_epoch, val_mode, val_patch_size, val_patches_per_image, augment,
                         seed, batch_size, num_workers)
        folder = skimage_data_dir()
        missing = [n for n in images if not (folder / n).is_file()]
        if missing:
            have = ", ".join(p.name for p in _image_files(folder))
            raise ValueError(f"skimage-sr: images {missing} are not in the installed scikit-image ({folder}); available: {have}")
        self.images = list(images)
        self.val_fraction = float(val_fraction)
        self._train_idx, self._val_idx = split_by_image(len(self.images), self.val_fraction, self.seed)

    def _load(self, idx: Sequence[int]):
        folder = skimage_data_dir()
        return [(self.images[i], load_rgb(folder / self.images[i]), None) for i in idx]

    def _train_images(self):
        return self._load(self._train_idx)

    def _val_images(self):
        return self._load(self._val_idx)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "val_fraction": self.val_fraction}


def _hr_folder_files(root: Path, scale: int) -> list[Path]:
    """HR images of a benchmark folder: ``root/HR``, Huang's ``root/image_SRF_<s>/*_HR.*``, or ``root``."""
    if (root / "HR").is_dir():
        return _image_files(root / "HR")
    srf = root / f"image_SRF_{scale}"
    if srf.is_dir():
        return [p for p in _image_files(srf) if p.stem.endswith("_HR")]
    return _image_files(root)


def _div2k_images(root: Path, split: str, scale: int, limit: int | None) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    hr_dir = root / f"DIV2K_{split}_HR"
    files = _image_files(hr_dir)[:limit] if limit else _image_files(hr_dir)
    lr_dir = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}"
    out = []
    for p in files:
        lr_path = next((q for q in (lr_dir / f"{p.stem}x{scale}{p.suffix}", lr_dir / f"{p.stem}x{scale}.png") if q.is_file()), None)
        out.append((p.name, load_rgb(p), load_rgb(lr_path) if lr_path is not None else None))
    return out


def _check_div2k(root: Path, name: str, what: str) -> Path:
    if not root.is_dir():
        raise ValueError(f"{name}: {what} {str(root)!r} is not a directory; expected a DIV2K folder with DIV2K_train_HR/ and DIV2K_valid_HR/")
    for split in ("train", "valid"):
        d = root / f"DIV2K_{split}_HR"
        if not d.is_dir() or not _image_files(d):
            found = sorted(p.name for p in root.iterdir())[:8]
            raise ValueError(f"{name}: {what} {str(root)!r} lacks images in DIV2K_{split}_HR/; found {found}")
    return root


@register_datamodule("div2k")
class DIV2KDataModule(SuperResDataModule):
    """DIV2K (Agustsson & Timofte, CVPR-W 2017): train on ``DIV2K_train_HR`` (800 images), validate on
    ``DIV2K_valid_HR`` (100 images, whole images by default). Official bicubic LR images are used
    when ``DIV2K_{split}_LR_bicubic/X<scale>/<id>x<scale>.png`` exist."""

    name = "div2k"
    default_val_mode = "full"

    def __init__(self, root: str | Path, scale: int = 2, patch_size: int = 48, patches_per_epoch: int = 1000,
                 val_mode: str | None = None, val_patch_size: int = 96, val_patches_per_image: int = 8,
                 augment: bool = True, seed: int = 0, batch_size: int = 16, num_workers: int = 0,
                 max_images: int | None = None) -> None:
        super().__init__(scale, patch_size, patches_per_epoch, val_mode, val_patch_size, val_patches_per_image, augment,
                         seed, batch_size, num_workers, max_images)
        self.root = _check_div2k(Path(root), self.name, "root")

    def _train_images(self):
        return _div2k_images(self.root, "train", self.scale, self.max_images)

    def _val_images(self):
        return _div2k_images(self.root, "valid", self.scale, self.max_images)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "root": str(self.root)}


class HRFolderDataModule(SuperResDataModule):
    """A folder of HR images scored on whole images (the benchmark protocol).

    ``train_root``: a DIV2K folder (its ``DIV2K_train_HR``) or any folder of HR images to train on;
    without it the folder's own images are split by image (``val_fraction``, seeded).
    """

    name = "srfolder"
    default_val_mode = "full"

    def __init__(self, root: str | Path, scale: int = 2, train_root: str | Path | None = None, val_fraction: float = 0.25,
                 patch_size: int = 24, patches_per_epoch: int = 256, val_mode: str | None = None, val_patch_size: int = 48,
                 val_patches_per_image: int = 8, augment: bool = True, seed: int = 0, batch_size: int = 16,
                 num_workers: int = 0, max_images: int | None = None) -> None:
        super().__init__(scale, patch_size, patches_per_epoch, val_mode, val_patch_size, val_patches_per_image, augment,
                         seed, batch_size, num_workers, max_images)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.name}: root {str(self.root)!r} is not a directory; expected a folder of HR images (or HR/ inside)")
        self.files = _hr_folder_files(self.root, self.scale)
        if not self.files:
            found = sorted(p.name for p in self.root.iterdir())[:8]
            raise ValueError(f"{self.name}: no images ({', '.join(IMG_EXTENSIONS)}) in {str(self.root)!r} (or its HR/); found {found}")
        self.train_root = Path(train_root) if train_root is not None else None
        self.val_fraction = float(val_fraction)
        if self.train_root is None:
            self._train_idx, self._val_idx = split_by_image(len(self.files), self.val_fraction, self.seed)
        elif not self.train_root.is_dir():
            raise ValueError(f"{self.name}: train_root {str(self.train_root)!r} is not a directory; expected a DIV2K folder or a folder of HR images")

    def _load(self, files: Sequence[Path]):
        return [(p.name, load_rgb(p), None) for p in files]

    def _train_images(self):
        if self.train_root is None:
            return self._load([self.files[i] for i in self._train_idx])
        if (self.train_root / "DIV2K_train_HR").is_dir():
            return _div2k_images(self.train_root, "train", self.scale, self.max_images)
        files = _hr_folder_files(self.train_root, self.scale)
        if not files:
            raise ValueError(f"{self.name}: no images in train_root {str(self.train_root)!r}")
        return self._load(files[: self.max_images] if self.max_images else files)

    def _val_images(self):
        files = self.files if self.train_root is not None else [self.files[i] for i in self._val_idx]
        return self._load(files[: self.max_images] if self.max_images else files)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "root": str(self.root), "train_root": str(self.train_root) if self.train_root else None}


register_datamodule("srfolder")(HRFolderDataModule)


def _benchmark(name: str, doc: str) -> type:
    cls = type(f"{name.capitalize()}DataModule", (HRFolderDataModule,), {"name": name, "__doc__": doc, "__module__": __name__})
    return register_datamodule(name)(cls)


Set5DataModule = _benchmark("set5", "Set5 (Bevilacqua et al. 2012): 5 HR images, scored on whole images.")
Set14DataModule = _benchmark("set14", "Set14 (Zeyde et al. 2010): 14 HR images, scored on whole images.")
B100DataModule = _benchmark("b100", "B100 / BSD100 (Martin et al. 2001): 100 HR images, scored on whole images.")
Urban100DataModule = _benchmark("urban100", "Urban100 (Huang et al. 2015): 100 HR urban scenes, scored on whole images.")

__all__ = ["SuperResDataModule", "SkimageSRDataModule", "DIV2KDataModule", "HRFolderDataModule", "Set5DataModule",
           "Set14DataModule", "B100DataModule", "Urban100DataModule", "RandomPatchPairs", "FixedPairs", "bicubic_downsample",
           "make_pair", "modcrop", "load_rgb", "split_by_image", "skimage_data_dir", "SKIMAGE_IMAGES"]
