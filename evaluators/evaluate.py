"""``evaluate(model, ...)``: one training run of one candidate, returning a flat dict of metrics."""

from __future__ import annotations

import math
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import nn

from ._quiet import quiet_lightning
from .callbacks import EpochReporter, default_recipe_callbacks, scalar_metrics
from .classification import ClassificationModule
from .data import ClassificationDataModule, get_datamodule
from .metrics import count_macs, count_params


class _RunRecorder(Callback):
    """Keeps the per-epoch validation results the final dict is built from."""

    def __init__(self) -> None:
        self.epochs = 0
        self.last: dict[str, float] = {}
        self.best_val_accuracy = math.nan
        self.keyboard_interrupt: KeyboardInterrupt | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.keyboard_interrupt = exception

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs += 1
        self.last = scalar_metrics(trainer)
        acc = self.last.get("val_accuracy", math.nan)
        if not math.isnan(acc) and not (acc <= self.best_val_accuracy):
            self.best_val_accuracy = acc


def _fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, recorder: _RunRecorder) -> None:
    """``trainer.fit`` that lets a KeyboardInterrupt through.

    Lightning answers Ctrl+C (and Ray's task cancellation, which raises KeyboardInterrupt) by
    ignoring SIGINT for the rest of the process and calling ``sys.exit(1)``. A long-lived search
    worker must neither exit nor lose SIGINT, so the handler is restored and the interrupt re-raised.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit(module, datamodule=datamodule)
    except (SystemExit, ValueError) as exc:
        if recorder.keyboard_interrupt is not None:
            raise KeyboardInterrupt(*recorder.keyboard_interrupt.args) from exc
        raise
    finally:
        if main_thread and handler is not None and signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)


def evaluate(
    model: nn.Module,
    *,
    data: str = "digits",
    data_kwargs: dict[str, Any] | None = None,
    datamodule: ClassificationDataModule | None = None,
    epochs: int = 10,
    lr: float = 0.05,
    optimizer: str = "sgd",
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    reporter: Callable[[int, dict[str, float]], bool | None] | None = None,
    callbacks: Sequence[Callback] = (),
    accelerator: str = "cpu",
    max_time_s: float | None = None,
    scheduler: str = "cosine",
    trainer_kwargs: dict[str, Any] | None = None,
    verbose: bool = False,
) -> dict[str, float | int | bool]:
    """Train ``model`` as a classifier and return a flat dict of metrics.

    Data: ``datamodule`` if given (then ``data``/``data_kwargs``/``batch_size`` are not used), else
    ``get_datamodule(data, batch_size=batch_size, **data_kwargs)``. The data split has its own seed
    (``data_kwargs["seed"]``, default 0), independent of ``seed``, so every trial of a search is
    scored on the same validation set. The model arrives initialised (by its builder) and is
    trained in place; ``seed`` drives the randomness of training (shuffling, augmentation, dropout)
    through ``pl.seed_everything(seed, workers=True)``.

    The technique recipe callbacks the model needs (``default_recipe_callbacks``) are added
    automatically unless one of the same type is in ``callbacks``. ``reporter(epoch, metrics)`` is
    called after every epoch (see :class:`EpochReporter`); returning ``True`` stops training.

    Returns ``val_accuracy`` and ``val_loss`` (final epoch), ``best_val_accuracy``, ``train_loss``,
    ``params`` (trainable elements), ``macs`` (see :func:`count_macs`: flops/2 at batch 1, so
    multiplication-free ops count 0), ``epochs`` (epochs run), ``wall_time_s`` (training time),
    ``stopped_early`` (the reporter asked to stop) and ``timed_out`` (``max_time_s`` ended training).
    Raises :class:`NonFiniteLossError` if the loss becomes NaN/inf. Writes no files. Lightning's
    banners and advisory warnings are silenced unless ``verbose``; ``trainer_kwargs`` override the
    Trainer arguments set here (e.g. ``limit_train_batches`` for a cheap fidelity,
    ``gradient_clip_val``, ``precision``).
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    if max_time_s is not None and not max_time_s > 0:
        raise ValueError(f"max_time_s must be > 0 or None, got {max_time_s}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")

    with quiet_lightning(verbose):
        pl.seed_everything(seed, workers=True, verbose=False)
        if datamodule is None:
            datamodule = get_datamodule(data, **{"batch_size": batch_size, **(data_kwargs or {})})
        elif data_kwargs:
            raise ValueError("pass either datamodule or data_kwargs, not both (data_kwargs configures a named data set)")
        input_shape, num_classes = tuple(datamodule.input_shape), int(datamodule.num_classes)

        params = count_params(model)
        macs = count_macs(model, input_shape)
        module = ClassificationModule(
            model,
            num_classes=num_classes,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            max_epochs=int(epochs),
            scheduler=scheduler,
        )

        user_callbacks = list(callbacks)
        user_types = {type(cb) for cb in user_callbacks}
        recipe = [cb for cb in default_recipe_callbacks(model) if type(cb) not in user_types]
        recorder = _RunRecorder()
        # The reporter runs after the recorder, so a stop request still counts the epoch just run.
        all_callbacks: list[Callback] = [*recipe, *user_callbacks, recorder]
        epoch_reporter = EpochReporter(reporter) if reporter is not None else None
        if epoch_reporter is not None:
            all_callbacks.append(epoch_reporter)

        with tempfile.TemporaryDirectory(prefix="abacus-eval-") as root:
            trainer = pl.Trainer(
                **{
                    "accelerator": accelerator,
                    "devices": 1,
                    "max_epochs": int(epochs),
                    "max_time": None if max_time_s is None else {"seconds": float(max_time_s)},
                    "callbacks": all_callbacks,
                    "logger": False,
                    "enable_checkpointing": False,
                    "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "num_sanity_val_steps": 0,
                    "default_root_dir": root,
                    **(trainer_kwargs or {}),
                }
            )
            start = time.perf_counter()
            _fit(trainer, module, datamodule, recorder)
            wall = time.perf_counter() - start
            stopped_early = bool(epoch_reporter is not None and epoch_reporter.stopped)
            timed_out = max_time_s is not None and not stopped_early and recorder.epochs < int(epochs)
            final = recorder.last
            if timed_out or "val_accuracy" not in final:
                # Training ended inside an epoch: score the weights we actually have.
                trainer.validate(module, datamodule=datamodule, verbose=False)
                final = {**final, **scalar_metrics(trainer)}

    val_acc = final.get("val_accuracy", math.nan)
    seen = [a for a in (recorder.best_val_accuracy, val_acc) if not math.isnan(a)]
    best = max(seen) if seen else math.nan
    return {
        "val_accuracy": float(val_acc),
        "best_val_accuracy": float(best),
        "val_loss": float(final.get("val_loss", math.nan)),
        "train_loss": float(final.get("train_loss", math.nan)),
        "params": int(params),
        "macs": int(macs),
        "epochs": int(recorder.epochs),
        "wall_time_s": float(wall),
        "stopped_early": stopped_early,
        "timed_out": bool(timed_out),
    }
