"""``evaluate(model, ...)``: one training run of one candidate (any task), returning a flat dict of metrics."""

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
from .callbacks import DataCostCallback, EpochReporter, default_recipe_callbacks, scalar_metrics
from .data import BaseDataModule, get_datamodule
from .metrics import count_macs, count_params, model_size
from .tasks import get_task


class _RunRecorder(Callback):
    """Keeps the per-epoch validation results the final dict is built from (and the best value of
    the task's primary metric, ``primary``)."""

    def __init__(self, primary: str = "val_accuracy", mode: str = "max") -> None:
        self.primary, self.mode = primary, mode
        self.epochs = 0
        self.last: dict[str, float] = {}
        self.best = math.nan
        self.keyboard_interrupt: KeyboardInterrupt | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.keyboard_interrupt = exception

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs += 1
        self.last = scalar_metrics(trainer)
        value = self.last.get(self.primary, math.nan)
        if not math.isnan(value) and (math.isnan(self.best) or _better(value, self.best, self.mode)):
            self.best = value


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


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
    datamodule: BaseDataModule | None = None,
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
    test: bool = False,
    **task_options: Any,
) -> dict[str, float | int | bool]:
    """Train ``model`` on the data's task and return a flat dict of metrics.

    The task comes from the data module (``datamodule.task``, ``evaluators.tasks``): a classifier
    (cross-entropy, ``val_accuracy``) for the classification data sets, a super-resolution model
    (L1, ``val_psnr`` / ``val_ssim`` on Y) for the SR data sets.

    A detection data module (``task == "detection"``: ``digits-detection``, ``voc``, ``coco``)
    hands the run to :func:`evaluators.detection.evaluate_detection` with the same arguments plus
    ``task_options`` (``teacher``, ``teacher_epochs``, ``gradient_clip_val``); a classification
    run takes no task options.

    Data: ``datamodule`` if given (then ``data``/``data_kwargs``/``batch_size`` are not used), else
    ``get_datamodule(data, batch_size=batch_size, **data_kwargs)``. The data split has its own seed
    (``data_kwargs["seed"]``, default 0), independent of ``seed``, so every trial of a search is
    scored on the same validation set. The model arrives initialised (by its builder) and is
    trained in place; ``seed`` drives the randomness of training (shuffling, augmentation, dropout)
    through ``pl.seed_everything(seed, workers=True)``.

    The technique recipe callbacks the model needs (``default_recipe_callbacks``) are added
    automatically unless one of the same type is in ``callbacks``. ``reporter(epoch, metrics)`` is
    called after every epoch (see :class:`EpochReporter`); returning ``True`` stops training.

    Task options (``task_options``) go to the task's Lightning module; the task names those it
    accepts (``Task.options``; translation: ``teacher``, ``fid_weights``, ``lambda_l1``, ...).

    Returns the task's metrics (classification: ``val_accuracy`` and ``val_loss`` (final epoch),
    ``best_val_accuracy``, ``train_loss``; super-resolution: ``val_psnr``, ``best_val_psnr``,
    ``val_ssim``, ``val_loss``, ``train_loss``; translation: ``val_fid`` (lower is better,
    ``best_val_fid`` the lowest), ``val_kid``, ``val_loss``), the measured cost summary of dynamic networks
    (``val_cost_ratio``, ... from ``DataCostCallback``),
    ``params`` (trainable elements), ``size_mb`` / ``size_mib`` / ``file_mb`` (:func:`model_size`), ``macs`` (see :func:`count_macs`: flops/2 at batch 1, so
    multiplication-free ops count 0), ``epochs`` (epochs run), ``wall_time_s`` (training time),
    ``stopped_early`` (the reporter asked to stop) and ``timed_out`` (``max_time_s`` ended training).
    With ``test=True`` the final weights are also scored once on the data module's held-out test
    split (``test_accuracy``, ``test_loss``); a search never asks for this, only a final retrain.
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

    if datamodule is None:
        datamodule = get_datamodule(data, **{"batch_size": batch_size, **(data_kwargs or {})})
    elif data_kwargs:
        raise ValueError("pass either datamodule or data_kwargs, not both (data_kwargs configures a named data set)")
    if getattr(datamodule, "task", "classification") == "detection":
        from .detection import evaluate_detection

        return evaluate_detection(model, datamodule=datamodule, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                                  seed=seed, reporter=reporter, callbacks=callbacks, accelerator=accelerator, max_time_s=max_time_s,
                                  scheduler=scheduler, trainer_kwargs=trainer_kwargs, verbose=verbose, **task_options)
    task = get_task(getattr(datamodule, "task", "classification"))
    unknown = sorted(set(task_options) - set(task.options))
    if unknown and not task.options:
        raise TypeError(f"evaluate: task {task.name!r} takes no task options, got {', '.join(unknown)}")
    if unknown:
        raise TypeError(f"evaluate: task {task.name!r} got unknown task option(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(task.options)}")
    with quiet_lightning(verbose):
        pl.seed_everything(seed, workers=True, verbose=False)
        input_shape = tuple(datamodule.input_shape)

        params = count_params(model)
        macs = count_macs(model, input_shape)
        module = task.make_module(model, datamodule, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                                  max_epochs=int(epochs), scheduler=scheduler, **task_options)

        user_callbacks = list(callbacks)
        user_types = {type(cb) for cb in user_callbacks}
        recipe = [cb for cb in default_recipe_callbacks(model) if type(cb) not in user_types]
        recorder = _RunRecorder(task.primary, task.mode)
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
            if timed_out or task.primary not in final:
                # Training ended inside an epoch: score the weights we actually have.
                trainer.validate(module, datamodule=datamodule, verbose=False)
                final = {**final, **scalar_metrics(trainer)}
            tested: dict[str, float] = {}
            if test:
                trainer.test(module, datamodule=datamodule, verbose=False)
                tested = {k: float(v) for k, v in scalar_metrics(trainer).items() if k.startswith("test_")}

    value = final.get(task.primary, math.nan)
    seen = [a for a in (recorder.best, value) if not math.isnan(a)]
    best = (min(seen) if task.mode == "min" else max(seen)) if seen else math.nan
    out: dict[str, float | int | bool] = {k: float(final.get(k, math.nan)) for k in task.metrics}
    out[task.primary], out[task.best] = float(value), float(best)
    cost_keys = sorted({k for cb in all_callbacks if isinstance(cb, DataCostCallback) for k in cb.logged})
    out.update({k: float(final[k]) for k in cost_keys if k in final})
    return {
        **out,
        "params": int(params),
        "macs": int(macs),
        **model_size(model),
        "epochs": int(recorder.epochs),
        "wall_time_s": float(wall),
        "stopped_early": stopped_early,
        "timed_out": bool(timed_out),
        **tested,
    }
