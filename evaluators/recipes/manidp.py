"""ManiDP recipe (Tang et al., CVPR 2021, arXiv 2103.05861) as a Lightning callback, plus measurement.

The loss terms live on the model (``supernets.manidp.ManiDPRegularizer.auxiliary_loss``, added to
the cross-entropy by ``ClassificationModule``); this callback supplies what the model cannot see:

* the batch labels before each training forward (the complexity-aware sparsity weights depend on
  each sample's cross-entropy relative to the previous epoch's mean training loss);
* that mean before epoch 0, from one eval-mode pass over the training data (official code);
* after each training epoch: the new mean loss and, on the official schedule (epoch >= 1, every
  ``threshold_freq`` epochs, and always after the last one), thresholds at the remain rate
  ``r(e)`` from the per-channel mean gate values of the epoch;
* during validation (``measure_on_validation``): the gates record which channels run, so the
  model's dynamic convs report the measured ``active_ratio`` to hw_cost afterwards, and
  ``val_mean_active_ratio`` is logged.

``measure_active_ratios(model, loader)`` does the measurement outside Lightning.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from supernets.manidp import ManiDPRegularizer, dynamic_convs, dynamic_gates

__all__ = ["ManiDPCallback", "ManiDPLoss", "measure_active_ratios", "find_regularizer", "mean_training_loss"]


def find_regularizer(model: nn.Module) -> ManiDPRegularizer | None:
    for m in model.modules():
        if isinstance(m, ManiDPRegularizer):
            return m
    return None


def _to(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch[0], batch[1]
    return x.to(device), y.to(device)


@torch.no_grad()
def mean_training_loss(model: nn.Module, loader: Iterable, max_batches: int | None = None, device: torch.device | str | None = None) -> float:
    """Mean per-sample cross-entropy of ``model`` in eval mode over ``loader`` (mode restored)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = _to(batch, dev)
            total += float(torch.nn.functional.cross_entropy(model(x).float(), y, reduction="sum"))
            n += int(y.numel())
    finally:
        model.train(was)
    if n == 0:
        raise ValueError("mean_training_loss: the loader yielded no samples")
    return total / n


def _set_recording(model: nn.Module, on: bool) -> None:
    for g in dynamic_gates(model):
        g.recording = on


def _reset_activity(model: nn.Module) -> None:
    for g in dynamic_gates(model):
        g.reset_activity()
    for _, c in dynamic_convs(model):
        c.reset_activity()


def _ratios(model: nn.Module) -> dict[str, float]:
    return {n: c.active_ratio for n, c in dynamic_convs(model) if c.active_ratio is not None}


@torch.no_grad()
def measure_active_ratios(model: nn.Module, dataloader: Iterable, max_batches: int | None = None,
                          device: torch.device | str | None = None) -> dict[str, float]:
    """Expected active fraction of every dynamic conv of ``model`` on ``dataloader`` (eval mode).

    Returns ``{layer name: ratio}`` (``conv1``: E[k1/C1], ``conv2``: E[(k1/C1)(k2/C2)]); the layers
    keep the values, so ``hw_cost`` costs the model with them afterwards. Previous measurements are
    discarded. The model's train/eval mode is restored.
    """
    convs = dynamic_convs(model)
    if not convs:
        raise ValueError("measure_active_ratios: the model has no dynamic layers (build it with ManiDP gates)")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    _reset_activity(model)
    _set_recording(model, True)
    model.eval()
    seen = 0
    try:
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(dev)
            model(x)
            seen += 1
    finally:
        _set_recording(model, False)
        model.train(was)
    if seen == 0:
        raise ValueError("measure_active_ratios: the dataloader yielded no batches")
    return _ratios(model)


class ManiDPLoss(nn.Module):
    """The full ManiDP objective for custom loops: ``mean CE + lambda_lasso L_lasso + lambda_graph L_graph``.

    ``ManiDPLoss(model)(logits, y)`` after a training forward of ``model`` (the gates keep that pass's
    gate values and features). ``terms`` holds the last unweighted terms.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        reg = find_regularizer(model)
        if reg is None:
            raise ValueError("ManiDPLoss: the model has no ManiDP regulariser (build it with add_dynamic_gates)")
        self._reg = [reg]  # not a submodule: the model owns it
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        reg = self._reg[0]
        t = reg.loss_terms(logits, targets)
        self.terms = t
        ce = torch.nn.functional.cross_entropy(logits, targets)
        return ce + reg.lambda_lasso * t["lasso"] + reg.lambda_graph * t["graph"]


class ManiDPCallback(Callback):
    """Drives ManiDP training inside ``ClassificationModule`` (see module docstring).

    ``initial_mean_loss``: the mean training loss before epoch 0; ``None`` measures it with one
    eval pass over (at most ``init_batches`` batches of) the training data.
    """

    def __init__(self, initial_mean_loss: float | None = None, init_batches: int | None = None, measure_on_validation: bool = True) -> None:
        super().__init__()
        if initial_mean_loss is not None and not float(initial_mean_loss) > 0:
            raise ValueError(f"initial_mean_loss: expected a number > 0 or None, found {initial_mean_loss!r}")
        self.initial_mean_loss = initial_mean_loss
        self.init_batches = init_batches
        self.measure_on_validation = measure_on_validation
        self._updated_epoch = -1
        self.remain_rates: list[float] = []

    def _reg(self, pl_module: pl.LightningModule) -> ManiDPRegularizer:
        reg = find_regularizer(pl_module)
        if reg is None:
            raise ValueError("ManiDPCallback: the model has no ManiDP gates (build it with manidp.enabled / add_dynamic_gates)")
        return reg

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reg = self._reg(pl_module)
        if math.isnan(float(reg.mean_train_loss)):
            if self.initial_mean_loss is not None:
                value = float(self.initial_mean_loss)
            else:
                model = getattr(pl_module, "model", pl_module)
                value = mean_training_loss(model, trainer.train_dataloader, self.init_batches, pl_module.device)
            reg.mean_train_loss.fill_(value)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reg(pl_module).start_epoch()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._reg(pl_module).set_targets(batch[1])

    def _finish_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._updated_epoch == epoch:
            return
        reg = self._reg(pl_module)
        if float(reg.epoch_loss_count) == 0:
            return  # no training batch ran in this epoch (yet)
        self._updated_epoch = epoch
        reg.end_epoch()
        epochs = int(trainer.max_epochs or epoch + 1)
        if reg.should_update(epoch, epochs):
            self.remain_rates.append(reg.update_thresholds(epoch, epochs))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if _fitting(trainer) and _last_batch_done(trainer):
            self._finish_epoch(trainer, pl_module)
        if self.measure_on_validation:
            _reset_activity(pl_module)
            _set_recording(pl_module, True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.measure_on_validation:
            return
        _set_recording(pl_module, False)
        ratios = _ratios(pl_module)
        if ratios:
            pl_module.log("val_mean_active_ratio", sum(ratios.values()) / len(ratios), on_step=False, on_epoch=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_epoch(trainer, pl_module)
        reg = self._reg(pl_module)
        if self.remain_rates:
            pl_module.log("manidp_remain_rate", self.remain_rates[-1], on_step=False, on_epoch=True)
        if reg.last_terms:
            pl_module.log("manidp_lasso", reg.last_terms["lasso"], on_step=False, on_epoch=True)
            pl_module.log("manidp_graph", reg.last_terms["graph"], on_step=False, on_epoch=True)


def _last_batch_done(trainer: pl.Trainer) -> bool:
    """Whether the training epoch's last batch has run (validation may also run mid-epoch)."""
    try:
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
    except AttributeError:
        return True



def _fitting(trainer: pl.Trainer) -> bool:
    """Inside ``trainer.fit`` (``trainer.training`` is False while fit runs its validation loop)."""
    return getattr(trainer.state, "fn", None) == "fit"  # TrainerFn is a str enum
