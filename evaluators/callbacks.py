"""Lightning callbacks: per-epoch reporting to the search, and the technique training recipes.

The recipe callbacks are duck-typed over modules, so any op (ours or a user's) opts in by defining
a method, and this package never imports op classes:

* ``apply_alr()`` + attribute ``alr == "accumulated"``: AdderNet's adaptive learning rate
  (Chen et al. 2020, arXiv 1912.13200, Eq. 13: the filter gradient is rescaled to
  ``eta * sqrt(k) / ||g||_2``). It must see the gradient *after* accumulation over micro-batches
  (and after AMP unscaling) and *before* momentum and weight decay, which is exactly Lightning's
  ``on_before_optimizer_step``.
* ``set_progress(fraction)``: training progress in [0, 1) for schedules owned by the op (the lp-norm
  p annealing 2 -> 1, the number of Fourier terms of FDA, the noise-module weight decay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

ReportFn = Callable[[int, dict[str, float]], "bool | None"]


def scalar_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The trainer's current scalar metrics as plain floats (tensors would not pickle cheaply)."""
    out: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return out


class EpochReporter(Callback):
    """Call ``fn(epoch, metrics)`` once per training epoch, after that epoch's validation.

    ``epoch`` is the 0-based index of the epoch just finished; ``metrics`` holds floats such as
    ``val_accuracy``, ``val_loss`` and ``train_loss`` (the epoch mean). If ``fn`` returns ``True``
    the trainer stops after this epoch and :attr:`stopped` becomes ``True`` (the search's pruning
    signal). The sanity-check validation never reaches ``fn``. Exceptions raised by ``fn`` (e.g.
    ``optuna.TrialPruned``) propagate out of ``trainer.fit`` unchanged.
    """

    def __init__(self, fn: ReportFn) -> None:
        if not callable(fn):
            raise TypeError(f"EpochReporter: fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.stopped = False
        self.stopped_epoch: int | None = None
        self.calls = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = int(trainer.current_epoch)
        self.calls += 1
        if self.fn(epoch, scalar_metrics(trainer)) is True:
            trainer.should_stop = True
            self.stopped = True
            self.stopped_epoch = epoch


def _alr_modules(model: nn.Module) -> list[nn.Module]:
    return [
        m for m in model.modules() if callable(getattr(m, "apply_alr", None)) and getattr(m, "alr", None) == "accumulated"
    ]


def _progress_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if callable(getattr(m, "set_progress", None))]


class AdaptiveLRCallback(Callback):
    """Before every optimizer step, call ``m.apply_alr()`` on each module with ``alr == "accumulated"``.

    The ``alr`` attribute is read at every step, so an op can switch its mode during training.
    """

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        for m in _alr_modules(pl_module):
            m.apply_alr()


class ProgressScheduleCallback(Callback):
    """Tell every module with ``set_progress`` how far training has come.

    ``granularity="epoch"`` (default) calls ``set_progress(epoch / (max_epochs - 1))`` at each train
    epoch start (0, 1/(E-1), ..., 1), so the last epoch already trains at the schedule's end value
    (p = 1 for the l2-to-l1 adder schedule) and the reported validation metric is that of the final
    network. ``"step"`` calls ``set_progress((epoch + batch / batches) / max_epochs)`` before every
    training batch, for schedules that anneal within an epoch. Either way ``set_progress(1.0)`` is
    called when training ends, so inference after training runs at the end of every schedule.
    """

    def __init__(self, granularity: str = "epoch") -> None:
        if granularity not in ("epoch", "step"):
            raise ValueError(f"ProgressScheduleCallback: granularity must be 'epoch' or 'step', got {granularity!r}")
        self.granularity = granularity

    @staticmethod
    def _total(trainer: pl.Trainer) -> int:
        max_epochs = trainer.max_epochs
        return int(max_epochs) if max_epochs is not None and max_epochs > 0 else 1

    def _set(self, pl_module: nn.Module, progress: float) -> None:
        progress = min(max(float(progress), 0.0), 1.0)
        for m in _progress_modules(pl_module):
            m.set_progress(progress)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.granularity == "epoch":
            self._set(pl_module, trainer.current_epoch / max(1, self._total(trainer) - 1))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.granularity == "step":
            batches = trainer.num_training_batches
            frac = batch_idx / batches if batches and batches != float("inf") else 0.0
            self._set(pl_module, (trainer.current_epoch + frac) / self._total(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(pl_module, 1.0)


class DataCostCallback(Callback):
    """Measure data-dependent costs on the validation images (``supernets.dynamic`` protocol).

    At the start of every validation pass (not the sanity check) each module with
    ``reset_cost_measurement()`` / ``set_cost_recording(on)`` starts a fresh recording; at its end
    recording stops, so the model holds the activity of the last validation pass (what hw_cost then
    costs) and every ``cost_summary()`` item is logged as ``val_<key>`` (:attr:`logged`).
    """

    def __init__(self) -> None:
        self.logged: set[str] = set()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        from supernets.dynamic import recording_modules

        for m in recording_modules(pl_module):
            m.reset_cost_measurement()
            m.set_cost_recording(True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        from supernets.dynamic import recording_modules

        for m in recording_modules(pl_module):
            m.set_cost_recording(False)
        for m in pl_module.modules():
            fn = getattr(m, "cost_summary", None)
            if callable(fn):
                for key, value in fn().items():
                    pl_module.log(f"val_{key}", float(value), on_step=False, on_epoch=True)
                    self.logged.add(f"val_{key}")


def default_recipe_callbacks(model: nn.Module) -> list[Callback]:
    """The recipe callbacks that ``model`` needs, judged by the methods its modules define."""
    from supernets.dynamic import recording_modules

    callbacks: list[Callback] = []
    if recording_modules(model):
        callbacks.append(DataCostCallback())
    if _alr_modules(model):
        callbacks.append(AdaptiveLRCallback())
    if _progress_modules(model):
        callbacks.append(ProgressScheduleCallback())
    from evaluators.recipes import recipe_callbacks

    callbacks += recipe_callbacks(model)
    return callbacks
