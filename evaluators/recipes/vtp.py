"""VTP recipe (Zhu, Tang, Han, arXiv 2104.08500) as one Lightning callback with two phases.

Phase 1, sparsity training (epochs ``[0, prune_epoch)``): the gate scores get the L1 pressure
``lambda * sum |a|``: either as ``lambda * sign(a)`` added to their gradient right before the
optimiser step (``l1_mode="subgradient"``, the unofficial code's way) or as a loss term returned by
the model's ``auxiliary_loss()`` (``l1_mode="loss"``; ``ClassificationModule`` adds it).

Phase 2 (at the start of epoch ``prune_epoch``): threshold the scores (global by default), replace
every gated layer by its physically slimmer version with the kept scores folded into the weights
(``supernets.vtp.apply_prune_plan``), rebuild the optimiser and LR schedule for the new parameters
(the schedule is fast-forwarded to the current epoch, so the cosine decay continues), and fine-tune
with the plain loss for the remaining epochs.

``prune_epoch = round(sparse_fraction * max_epochs)``, clamped to ``[1, max_epochs - 1]``; with a
single epoch the model is pruned right before its validation (no fine-tuning is possible).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from supernets.vtp import VTPConfig, add_l1_subgradient, apply_prune_plan, gated_layers, prune_plan, total_kept_fraction

__all__ = ["VTPCallback", "prune_model", "find_vtp_config", "prune_epoch_for"]


def find_vtp_config(model: nn.Module) -> VTPConfig | None:
    """The ``VTPConfig`` a builder attached to ``model`` (or one of its submodules), if any."""
    for m in model.modules():
        cfg = getattr(m, "vtp_config", None)
        if isinstance(cfg, VTPConfig):
            return cfg
    return None


def prune_epoch_for(sparse_fraction: float, max_epochs: int) -> int:
    if max_epochs < 2:
        return 0
    return min(max(1, int(round(sparse_fraction * max_epochs))), max_epochs - 1)


@torch.no_grad()
def prune_model(model: nn.Module, config: VTPConfig | None = None) -> dict[str, torch.Tensor]:
    """Threshold the gates of ``model`` and slim it in place; returns the plan (kept indices per layer)."""
    cfg = config or find_vtp_config(model)
    if cfg is None:
        raise ValueError("prune_model: no VTPConfig given and the model carries none (build it with vtp.enabled=True)")
    plan = prune_plan(model, cfg.prune_rate, cfg.scope, cfg.head_rounding, cfg.block_keep, cfg.min_keep)
    apply_prune_plan(model, plan)
    return plan


class VTPCallback(Callback):
    """Sparsity training, then prune-and-slim, then fine-tuning (see module docstring).

    ``config``: the recipe; default the ``VTPConfig`` the builder attached to the model.
    ``prune_epoch``: overrides the epoch derived from ``config.sparse_fraction``.
    After pruning, ``plan`` holds the kept indices and ``kept_fraction`` the share of gated
    dimensions kept; ``vtp_kept_fraction`` is logged every epoch from then on.
    """

    def __init__(self, config: VTPConfig | None = None, prune_epoch: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.prune_epoch = prune_epoch
        self.plan: dict[str, torch.Tensor] | None = None
        self.kept_fraction: float | None = None

    @property
    def pruned(self) -> bool:
        return self.plan is not None

    def _cfg(self, pl_module: pl.LightningModule) -> VTPConfig:
        if self.config is None:
            self.config = find_vtp_config(pl_module)
            if self.config is None:
                raise ValueError("VTPCallback: the model carries no VTPConfig (build it with vtp.enabled=True) and none was given")
        return self.config

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cfg = self._cfg(pl_module)
        if not gated_layers(pl_module):
            raise ValueError("VTPCallback: the model has no VTP gates (build it with vtp.enabled=True)")
        if self.prune_epoch is None:
            self.prune_epoch = prune_epoch_for(cfg.sparse_fraction, int(trainer.max_epochs or 1))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        cfg = self._cfg(pl_module)
        if not self.pruned and cfg.l1_mode == "subgradient" and cfg.lam > 0:
            add_l1_subgradient(pl_module, cfg.lam)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.pruned and self.prune_epoch is not None and self.prune_epoch > 0 and trainer.current_epoch >= self.prune_epoch:
            self._prune(trainer, pl_module, rebuild_optimizer=True)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.pruned and self.prune_epoch == 0 and not trainer.sanity_checking and _fitting(trainer):
            self._prune(trainer, pl_module, rebuild_optimizer=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.kept_fraction is not None:
            pl_module.log("vtp_kept_fraction", float(self.kept_fraction), on_step=False, on_epoch=True)

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, rebuild_optimizer: bool) -> None:
        cfg = self._cfg(pl_module)
        plan = prune_plan(pl_module, cfg.prune_rate, cfg.scope, cfg.head_rounding, cfg.block_keep, cfg.min_keep)
        self.kept_fraction = total_kept_fraction(pl_module, plan)
        apply_prune_plan(pl_module, plan)
        self.plan = {k.split("model.", 1)[-1] if k.startswith("model.") else k: v for k, v in plan.items()}
        if rebuild_optimizer:
            self._rebuild_optimizers(trainer)

    @staticmethod
    def _rebuild_optimizers(trainer: pl.Trainer) -> None:
        """New optimiser(s) for the new parameters; LR schedules fast-forwarded to where they were."""
        trainer.strategy.setup_optimizers(trainer)
        epochs, steps = trainer.current_epoch, trainer.global_step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            for cfg in trainer.lr_scheduler_configs:
                n = steps if cfg.interval == "step" else epochs
                for _ in range(n):
                    cfg.scheduler.step()


def _fitting(trainer: pl.Trainer) -> bool:
    """Inside ``trainer.fit`` (``trainer.training`` is False while fit runs its validation loop)."""
    return getattr(trainer.state, "fn", None) == "fit"  # TrainerFn is a str enum
