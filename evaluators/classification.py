"""The Lightning module for image classification: any ``nn.Module`` classifier, cross-entropy loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from .training import OPTIMIZERS, SCHEDULERS, TrainingModule, no_decay_names, param_groups

__all__ = ["ClassificationModule", "OPTIMIZERS", "SCHEDULERS", "no_decay_names", "param_groups"]


class ClassificationModule(TrainingModule):
    """Train ``model`` (logits ``(N, num_classes)`` from images) with cross-entropy.

    Defaults follow the CIFAR recipes of the AdderNet / FDA papers: SGD with momentum 0.9 and a
    cosine learning-rate decay to 0 over ``max_epochs`` (stepped per epoch). Logs ``train_loss``,
    ``train_accuracy``, ``val_loss`` and ``val_accuracy`` (torchmetrics, micro-averaged top-1).
    A NaN/inf loss raises :class:`~evaluators.errors.NonFiniteLossError` at once, so a diverged
    trial fails fast instead of training on garbage.

    Loss terms of techniques (a sparsity penalty on pruning gates, a manifold regulariser) join by
    duck typing: every submodule with an ``auxiliary_loss()`` method is asked, after each training
    forward pass, for a scalar tensor (or ``None``) that is added to the cross-entropy; the sum of
    these terms is logged as ``train_aux_loss`` (:class:`~evaluators.training.TrainingModule`).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        max_epochs: int = 10,
        scheduler: str = "cosine",
        nesterov: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        super().__init__(model, optimizer, lr, momentum, weight_decay, max_epochs, scheduler, nesterov)
        self.num_classes = int(num_classes)
        self.train_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"model output must be logits of shape (N, {self.num_classes}), got {tuple(logits.shape)}"
            )
        return self.checked(F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing), stage)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.add_auxiliary(self._loss(logits, y, "train"), len(y))
        self.train_acc(logits.detach(), y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_accuracy", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        loss = self._loss(logits, y, "validation")
        self.val_acc(logits, y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("val_accuracy", self.val_acc, on_step=False, on_epoch=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """The held-out test split: measured once, after training, never used to select anything."""
        x, y = batch
        logits = self.model(x)
        loss = self._loss(logits, y, "test")
        self.test_acc(logits, y)
        self.log("test_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("test_accuracy", self.test_acc, on_step=False, on_epoch=True)
