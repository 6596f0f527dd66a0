"""Lightning modules for image-to-image tasks: a generic base and super-resolution.

``ImageToImageModule`` trains any ``nn.Module`` that maps an input image batch to a target image
batch with a pixel loss (L1 by default) and scores validation images with metrics its subclasses
name; a generator search, denoising or SR reuse it by choosing the loss and the metrics.
``SuperResolutionModule`` scores PSNR and SSIM (torchmetrics) on the Y channel with the usual
border crop of ``scale`` pixels, on 8-bit-quantised outputs, as the SR benchmarks do.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from .metrics import quantize_01, rgb_to_y, shave
from .training import TrainingModule

__all__ = ["ImageToImageModule", "SuperResolutionModule", "PIXEL_LOSSES", "sr_metrics"]

PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


class ImageToImageModule(TrainingModule):
    """Train ``model(x) -> y_hat`` against target images ``y`` with a pixel ``loss`` (``l1`` or ``mse``).

    ``metrics``: torchmetrics ``Metric`` objects by name, updated with :meth:`prepare` (prediction,
    target) on every validation batch and logged per epoch as ``val_<name>``; ``val_loss`` and
    ``train_loss`` are logged as well. Techniques add loss terms through ``auxiliary_loss()``
    (:class:`~evaluators.training.TrainingModule`). Defaults are EDSR's recipe: Adam, no weight decay.
    """

    def __init__(self, model: nn.Module, metrics: Mapping[str, Metric] | None = None, loss: str = "l1",
                 optimizer: str = "adam", lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 0.0,
                 max_epochs: int = 10, scheduler: str = "cosine", nesterov: bool = False) -> None:
        if loss not in PIXEL_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(PIXEL_LOSSES)}, got {loss!r}")
        super().__init__(model, optimizer, lr, momentum, weight_decay, max_epochs, scheduler, nesterov)
        self.loss_fn = PIXEL_LOSSES[loss]
        self.val_metrics = nn.ModuleDict(dict(metrics or {}))

    def _loss(self, pred: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        if pred.shape != y.shape:
            raise ValueError(f"model output has shape {tuple(pred.shape)} but the target images have {tuple(y.shape)}")
        return self.checked(self.loss_fn(pred, y), stage)

    def prepare(self, pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the metrics see (subclasses convert colour, crop borders, quantise)."""
        return pred, y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        pred = self.model(x)
        loss = self.add_auxiliary(self._loss(pred, y, "train"), len(y))
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        pred = self.model(x)
        self.log("val_loss", self._loss(pred, y, "validation"), on_step=False, on_epoch=True, batch_size=len(y))
        p, t = self.prepare(pred.detach(), y)
        for name, metric in self.val_metrics.items():
            metric.update(p, t)
            self.log(f"val_{name}", metric, on_step=False, on_epoch=True, batch_size=len(y))


def sr_metrics() -> dict[str, Metric]:
    """PSNR and SSIM per image (then averaged over images) on [0, 1] images: torchmetrics with
    ``dim=(1, 2, 3)`` for PSNR (per-image, the benchmark convention) and the Gaussian 11x11,
    sigma 1.5 SSIM of Wang et al. 2004."""
    return {
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean"),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=11, sigma=1.5, reduction="elementwise_mean"),
    }


class SuperResolutionModule(ImageToImageModule):
    """x2 / x3 / x4 super-resolution: L1 loss; ``val_psnr`` / ``val_ssim`` on the Y channel after
    cropping ``border`` pixels (default: ``scale``) from the 8-bit-quantised output."""

    def __init__(self, model: nn.Module, scale: int, border: int | None = None, y_channel: bool = True,
                 quantize: bool = True, loss: str = "l1", optimizer: str = "adam", lr: float = 1e-4,
                 momentum: float = 0.9, weight_decay: float = 0.0, max_epochs: int = 10, scheduler: str = "cosine",
                 nesterov: bool = False) -> None:
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive int, got {scale!r}")
        super().__init__(model, sr_metrics(), loss, optimizer, lr, momentum, weight_decay, max_epochs, scheduler, nesterov)
        self.scale = int(scale)
        self.border = self.scale if border is None else int(border)
        self.y_channel, self.quantize = bool(y_channel), bool(quantize)

    def prepare(self, pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.quantize:
            pred = quantize_01(pred)
        if self.y_channel:
            pred, y = rgb_to_y(pred), rgb_to_y(y)
        return shave(pred, self.border), shave(y, self.border)
