"""What every task's Lightning module shares: the optimiser recipe, technique loss terms, NaN checks.

Why a base class: the classification, image-to-image and super-resolution modules differ only in
their loss and metrics; the optimiser choice (SGD / Adam / AdamW, per-epoch cosine decay), the
parameter groups that skip weight decay (``no_weight_decay()`` on modules), the duck-typed
``auxiliary_loss()`` terms of techniques (VTP, ManiDP, FADN) and the fail-fast NaN check are one
implementation here.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from .errors import NonFiniteLossError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "none")


class TrainingModule(pl.LightningModule):
    """Base of the task modules: holds ``model`` and the optimiser hyper-parameters.

    Subclasses implement ``training_step``/``validation_step`` and call :meth:`checked` on every
    loss and :meth:`add_auxiliary` on the training loss. Every submodule with an
    ``auxiliary_loss()`` method is asked, after each training forward pass, for a scalar tensor (or
    ``None``) that is added to the loss; their sum is logged as ``train_aux_loss``.
    """

    hparams_ignore: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 5e-4, max_epochs: int = 10, scheduler: str = "cosine", nesterov: bool = False) -> None:
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
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        # collects the init arguments of the subclasses too (Lightning walks the __init__ frames);
        # subclasses name their module arguments in ``hparams_ignore`` (modules are not hyper-parameters)
        self.save_hyperparameters(ignore=["model", *self.hparams_ignore])
        self.model = model
        self._aux_modules = [m for m in model.modules() if callable(getattr(m, "auxiliary_loss", None))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def checked(self, loss: torch.Tensor, stage: str) -> torch.Tensor:
        """``loss`` itself, or :class:`NonFiniteLossError` when it is NaN/inf (a diverged trial fails fast)."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(float(loss.detach()), self.current_epoch, self.global_step, stage)
        return loss

    def add_auxiliary(self, loss: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``loss`` plus the techniques' ``auxiliary_loss()`` terms of the last training forward."""
        terms = [t for t in (m.auxiliary_loss() for m in self._aux_modules) if t is not None]
        if not terms:
            return loss
        aux = torch.stack([torch.as_tensor(t, device=loss.device, dtype=loss.dtype).reshape(()) for t in terms]).sum()
        if not torch.isfinite(aux):
            raise NonFiniteLossError(float(aux.detach()), self.current_epoch, self.global_step, "auxiliary")
        self.log("train_aux_loss", aux.detach(), on_step=False, on_epoch=True, batch_size=batch_size)
        return loss + aux

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
