"""FID and KID of generated images (torchmetrics) with a pluggable feature extractor.

The Fréchet and kernel Inception distances are defined on the 2048-d pool features of the
TF-ported Inception v3 (``inception-2015-12-05``). torchmetrics computes that network through
torch-fidelity, which cannot be installed beside this project's torch (it pulls torchvision and a
CUDA torch) and downloads its weights; so the extractor is chosen here:

* ``inception`` (``evaluators.inception.InceptionFeatures``): the FID Inception v3, when its
  weights are given as a local file (``fid_weights``; nothing is downloaded);
* otherwise ``random-cnn-v1`` (:class:`RandomConvFeatures`): a fixed, seeded random conv net
  (3 -> 16 -> 32 -> 64 channels, 3x3 stride 2, ReLU, on 64x64 resized inputs; features = per-channel
  mean and standard deviation of the last two layers, 192 dims). Random-network embeddings keep
  FID's properties that matter for ranking generators of one search (zero for identical sets,
  growing with distribution shift in colour, edges and texture statistics) but their values are on
  another scale than Inception FIDs and not comparable with published numbers.

Every value carries the extractor's identity (:func:`extractor_identity`: name + hash of its
weights, e.g. ``random-cnn-v1:3f2a9c1e``); the translation task records it with the metric
(``fid.extractor``) and the search tools refuse to compare values of different extractors.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomConvFeatures", "make_extractor", "extractor_identity", "GenerationMetrics", "EXTRACTORS"]

EXTRACTORS = ("random-cnn-v1", "inception")


class _Frozen(nn.Module):
    """A feature extractor: no trainable parameters, always in eval mode, images in [0, 1]."""

    name = "extractor"
    num_features = 0

    def train(self, mode: bool = True) -> "_Frozen":
        return super().train(False)

    @staticmethod
    def as_float_rgb(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"feature extractor: expected (N, 1 or 3, H, W) images, found shape {tuple(x.shape)}")
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class RandomConvFeatures(_Frozen):
    """``random-cnn-v1``: see the module docstring. Weights come from numpy's PCG64 generator
    (``seed``), He-scaled, held as buffers (nothing to train, nothing in ``parameters()``)."""

    name = "random-cnn-v1"
    WIDTHS = (3, 16, 32, 64)

    def __init__(self, seed: int = 0, size: int = 64) -> None:
        super().__init__()
        rng = np.random.default_rng(int(seed))
        self.size = int(size)
        for i, (cin, cout) in enumerate(zip(self.WIDTHS[:-1], self.WIDTHS[1:])):
            w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
            self.register_buffer(f"w{i}", torch.tensor(w, dtype=torch.float32))
        self.num_features = 2 * (self.WIDTHS[-1] + self.WIDTHS[-2])
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.as_float_rgb(x).to(self.w0.dtype)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        h = (x - 0.5) / 0.5
        stats = []
        for i in range(len(self.WIDTHS) - 1):
            h = F.relu(F.conv2d(h, getattr(self, f"w{i}"), stride=2, padding=1))
            if i >= len(self.WIDTHS) - 3:
                stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
        return torch.cat(stats, dim=1)


def extractor_identity(extractor: nn.Module) -> str:
    """``name:sha8`` of the extractor's weights (parameters and buffers, in state_dict order)."""
    h = hashlib.sha256()
    for key, t in extractor.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return f"{getattr(extractor, 'name', type(extractor).__name__)}:{h.hexdigest()[:8]}"


def make_extractor(weights: str | None = None) -> nn.Module:
    """The FID Inception v3 from the local weights file ``weights``, else ``random-cnn-v1``."""
    if weights:
        from .inception import InceptionFeatures

        return InceptionFeatures.from_file(weights)
    return RandomConvFeatures()


class GenerationMetrics(nn.Module):
    """FID and KID (torchmetrics) of generated vs real images, on one shared extractor.

    ``update(fake, real)`` takes [0, 1] image batches; ``compute()`` returns ``{"fid", "kid"}``
    (KID: mean over ``kid_subsets`` subsets of ``min(kid_subset_size, n)`` images). ``identity``
    names the extractor the values belong to."""

    def __init__(self, extractor: nn.Module | None = None, kid_subset_size: int = 50, kid_subsets: int = 20) -> None:
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        extractor = extractor if extractor is not None else RandomConvFeatures()
        self.identity = extractor_identity(extractor)
        self.kid_subset_size = int(kid_subset_size)
        self.fid = FrechetInceptionDistance(feature=extractor, normalize=True)
        with warnings.catch_warnings():  # "KID keeps every feature in memory": a validation set's worth, by design
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(feature=extractor, normalize=True, subsets=int(kid_subsets),
                                               subset_size=self.kid_subset_size)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        fake, real = fake.detach().clamp(0, 1), real.detach().clamp(0, 1)
        for metric in (self.fid, self.kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)

    def compute(self) -> dict[str, float]:
        n = int(self.fid.real_features_num_samples)
        n_fake = int(self.fid.fake_features_num_samples)
        if min(n, n_fake) < 2:
            raise ValueError(f"FID/KID: expected at least 2 real and 2 generated images, found {n} and {n_fake}")
        self.kid.subset_size = min(self.kid_subset_size, n, n_fake)
        kid_mean, _ = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean)}

    def reset(self) -> None:
        self.fid.reset()
        self.kid.reset()

    def describe(self) -> dict[str, Any]:
        return {"fid.extractor": self.identity}
