"""Small image transforms on tensors (and PIL for resizing), written here because torchvision
does not install beside this torch.

Tensor transforms take and return one ``(C, H, W)`` float tensor. Random transforms draw from
torch's global generator, so ``pl.seed_everything(seed, workers=True)`` makes them reproducible
(also inside DataLoader workers). The CIFAR recipe (zero-pad 4, random 32x32 crop, horizontal flip,
per-channel normalisation) is the standard one of He et al. 2016 (arXiv 1512.03385, Sec. 4.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """Per-channel ``(x - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"Normalize: mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.mean.shape[0]:
            raise ValueError(f"Normalize: expected {self.mean.shape[0]} channels, got tensor of shape {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


class RandomCrop:
    """Pad by ``padding`` pixels (constant ``fill``) on every side, then crop ``size`` at a random place."""

    def __init__(self, size: int | Sequence[int], padding: int = 0, fill: float = 0.0) -> None:
        self.size = _pair(size)
        self.padding = int(padding)
        self.fill = float(fill)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding > 0:
            p = self.padding
            x = F.pad(x, (p, p, p, p), value=self.fill)
        h, w = x.shape[-2:]
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: crop {self.size} is larger than the padded image {(h, w)}")
        i = int(torch.randint(0, h - th + 1, (1,)))
        j = int(torch.randint(0, w - tw + 1, (1,)))
        return x[..., i : i + th, j : j + tw]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class CenterCrop:
    """Crop the central ``size`` region of a tensor image."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"CenterCrop: crop {self.size} is larger than the image {(h, w)}")
        i = (h - th) // 2
        j = (w - tw) // 2
        return x[..., i : i + th, j : j + tw]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


# --------------------------------------------------------------------------- PIL stage
# These run on PIL images (ImageFolder) before conversion to a tensor, because resampling with
# PIL's antialiased filters is both faster and better than interpolating tensors.


class Resize:
    """Resize a PIL image so that its *shorter* side equals ``size`` (aspect ratio kept)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, img):
        from PIL import Image

        w, h = img.size
        if min(w, h) == self.size:
            return img
        if w <= h:
            nw, nh = self.size, max(1, round(h * self.size / w))
        else:
            nw, nh = max(1, round(w * self.size / h)), self.size
        return img.resize((nw, nh), Image.BILINEAR)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomResizedCrop:
    """Crop a random region (area fraction in ``scale``, aspect ratio in ``ratio``, log-uniform) and
    resize it to ``size`` x ``size``: the ImageNet training augmentation of Szegedy et al. 2015
    (arXiv 1409.4842, Sec. 6). Falls back to a central crop after 10 failed draws."""

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    ) -> None:
        self.size = int(size)
        self.scale = scale
        self.ratio = ratio

    def __call__(self, img):
        from PIL import Image

        w, h = img.size
        area = w * h
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(()).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(()).uniform_(*log_r)))
            cw = round(math.sqrt(target * aspect))
            ch = round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,)))
                left = int(torch.randint(0, w - cw + 1, (1,)))
                break
        else:  # central crop with the ratio clamped into range
            in_ratio = w / h
            if in_ratio < self.ratio[0]:
                cw, ch = w, round(w / self.ratio[0])
            elif in_ratio > self.ratio[1]:
                ch, cw = h, round(h * self.ratio[1])
            else:
                cw, ch = w, h
            top, left = (h - ch) // 2, (w - cw) // 2
        return img.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + cw, top + ch))

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


def pil_to_tensor(img) -> torch.Tensor:
    """PIL image -> float ``(C, H, W)`` tensor in [0, 1] (grayscale gives C = 1)."""
    arr = np.array(img)  # a writable copy: PIL buffers are read-only
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(C, H, W)`` tensor -> float in [0, 1]."""
    return x.float().div_(255.0)


def cifar_train_transform(mean: Sequence[float], std: Sequence[float], size: int = 32) -> Compose:
    """Standard CIFAR training augmentation: zero-pad 4 + random crop, horizontal flip, normalise."""
    return Compose([uint8_to_float, RandomCrop(size, padding=4), RandomHorizontalFlip(0.5), Normalize(mean, std)])


def cifar_eval_transform(mean: Sequence[float], std: Sequence[float]) -> Compose:
    """CIFAR evaluation: just normalise."""
    return Compose([uint8_to_float, Normalize(mean, std)])
