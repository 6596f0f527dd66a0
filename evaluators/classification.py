"""The Lightning module for image classification: any ``nn.Module`` classifier, cross-entropy loss."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from .errors import NonFiniteLossError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "none")


class ClassificationModule(pl.LightningModule):
    """Train ``model`` (logits ``(N, num_classes)`` from images) with cross-entropy.

    Defaults follow the CIFAR recipes of the AdderNet / FDA papers: SGD with momentum 0.9 and a
    cosine learning-rate decay to 0 over ``max_epochs`` (stepped per epoch). Logs ``train_loss``,
    ``train_accuracy``, ``val_loss`` and ``val_accuracy`` (torchmetrics, micro-averaged top-1).
    A NaN/inf loss raises :class:`~evaluators.errors.NonFiniteLossError` at once, so a diverged
    trial fails fast instead of training on garbage.

    Loss terms of techniques (a sparsity penalty on pruning gates, a manifold regulariser) join by
    duck typing: every submodule with an ``auxiliary_loss()`` method is asked, after each training
    forward pass, for a scalar tensor (or ``None``) that is added to the cross-entropy; the sum of
    these terms is logged as ``train_aux_loss``.
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
        super().__init__()
        optimizer = optimizer.lower()
        scheduler = (scheduler or "none").lower()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.num_classes = int(num_classes)
        self.train_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self._aux_modules = [m for m in model.modules() if callable(getattr(m, "auxiliary_loss", None))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"model output must be logits of shape (N, {self.num_classes}), got {tuple(logits.shape)}"
            )
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(float(loss.detach()), self.current_epoch, self.global_step, stage)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self._loss(logits, y, "train")
        terms = [t for t in (m.auxiliary_loss() for m in self._aux_modules) if t is not None]
        if terms:
            aux = torch.stack([torch.as_tensor(t, device=loss.device, dtype=loss.dtype).reshape(()) for t in terms]).sum()
            if not torch.isfinite(aux):
                raise NonFiniteLossError(float(aux.detach()), self.current_epoch, self.global_step, "auxiliary")
            self.log("train_aux_loss", aux.detach(), on_step=False, on_epoch=True, batch_size=len(y))
            loss = loss + aux
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

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = param_groups(self.model, hp.weight_decay)
        if not any(g["params"] for g in params):
            raise ValueError("model has no trainable parameters; nothing to optimise")
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov
            )
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs, eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that modules exclude from weight decay through ``no_weight_decay()`` (names
    relative to the module, timm's convention): position embeddings, pruning gates, ..."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names |= {f"{prefix}.{n}" if prefix else n for n in fn()}
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed, and the parameters modules declare as not decayed. Everything
    else is decayed, as the AdderNet reference recipe does (biases and norms included)."""
    skip = no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
