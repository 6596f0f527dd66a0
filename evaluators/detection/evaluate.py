"""``evaluate_detection(model, ...)``: one training run of one detector, returning a flat dict.

The same contract as ``evaluators.evaluate`` (which hands detection data modules to this
function): per-epoch reporting through ``EpochReporter`` (so the search's early stopping works
on ``val_map``), the technique recipe callbacks the model needs (adder ALR, schedules), the
KeyboardInterrupt-safe fit, no files written. The teacher for FitNet/DeFeat comes from
``teacher`` (an exported detector directory, see ``evaluators.detection.teacher``).
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import nn

from .._quiet import quiet_lightning
from ..callbacks import EpochReporter, default_recipe_callbacks, scalar_metrics
from ..evaluate import _fit, _RunRecorder
from ..metrics import count_macs, count_params
from .module import DetectionModule


def evaluate_detection(
    model: nn.Module,
    *,
    datamodule: Any,
    epochs: int = 10,
    lr: float = 0.01,
    optimizer: str = "sgd",
    weight_decay: float = 1e-4,
    seed: int = 0,
    reporter: Callable[[int, dict[str, float]], bool | None] | None = None,
    callbacks: Sequence[Callback] = (),
    accelerator: str = "cpu",
    max_time_s: float | None = None,
    scheduler: str = "cosine",
    trainer_kwargs: dict[str, Any] | None = None,
    verbose: bool = False,
    teacher: str | Path | nn.Module | None = None,
    teacher_epochs: int | None = None,
    gradient_clip_val: float | None = 35.0,
) -> dict[str, float | int | bool]:
    """Train ``model`` (a ``detector``-space network) on ``datamodule`` and return metrics.

    Returns ``val_map`` (mAP@[.5:.95], final epoch), ``best_val_map``, ``val_map50``, ``val_loss``,
    ``train_loss``, ``params``, ``macs``, ``epochs``, ``wall_time_s``, ``stopped_early``,
    ``timed_out``. ``teacher``: an ``nn.Module`` or the directory of an exported teacher
    (``supernets.save_exported``); when the directory does not exist yet and ``teacher_epochs`` is
    given, the teacher is trained first and saved there (once, under a file lock, so parallel
    trials share it). ``gradient_clip_val`` 35 is the DeFeat release's max-norm clipping.
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    method = str(getattr(model, "distill_config", {}).get("method", "none"))
    teacher_model: nn.Module | None = None
    if method != "none":
        if teacher is None:
            raise ValueError(f"defeat.method={method!r} needs a teacher: set evaluator option 'teacher' to an exported detector directory")
        if isinstance(teacher, nn.Module):
            teacher_model = teacher
        else:
            from .teacher import ensure_teacher

            teacher_model = ensure_teacher(teacher, datamodule=datamodule, epochs=teacher_epochs, lr=lr, optimizer=optimizer, seed=seed)
    with quiet_lightning(verbose), warnings.catch_warnings():
        # the frozen teacher is in eval mode on purpose; Lightning would warn about it every run
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        pl.seed_everything(seed, workers=True, verbose=False)
        params = count_params(model)
        macs = count_macs(model, tuple(datamodule.input_shape))
        module = DetectionModule(model, teacher_model, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                                 max_epochs=int(epochs), scheduler=scheduler)
        user_types = {type(cb) for cb in callbacks}
        recipe = [cb for cb in default_recipe_callbacks(model) if type(cb) not in user_types]
        recorder = _RunRecorder("val_map")
        all_callbacks: list[Callback] = [*recipe, *callbacks, recorder]
        epoch_reporter = EpochReporter(reporter) if reporter is not None else None
        if epoch_reporter is not None:
            all_callbacks.append(epoch_reporter)
        with tempfile.TemporaryDirectory(prefix="abacus-det-") as root:
            trainer = pl.Trainer(**{
                "accelerator": accelerator, "devices": 1, "max_epochs": int(epochs),
                "max_time": None if max_time_s is None else {"seconds": float(max_time_s)},
                "callbacks": all_callbacks, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": root,
                "gradient_clip_val": gradient_clip_val, **(trainer_kwargs or {}),
            })
            start = time.perf_counter()
            _fit(trainer, module, datamodule, recorder)
            wall = time.perf_counter() - start
            stopped_early = bool(epoch_reporter is not None and epoch_reporter.stopped)
            timed_out = max_time_s is not None and not stopped_early and recorder.epochs < int(epochs)
            final = recorder.last
            if timed_out or "val_map" not in final:
                trainer.validate(module, datamodule=datamodule, verbose=False)
                final = {**final, **scalar_metrics(trainer)}
    val_map = final.get("val_map", math.nan)
    seen = [a for a in (recorder.best, val_map) if not math.isnan(a)]
    return {
        "val_map": float(val_map),
        "best_val_map": float(max(seen)) if seen else math.nan,
        "val_map50": float(final.get("val_map50", math.nan)),
        "val_loss": float(final.get("val_loss", math.nan)),
        "train_loss": float(final.get("train_loss", math.nan)),
        "params": int(params),
        "macs": int(macs),
        "epochs": int(recorder.epochs),
        "wall_time_s": float(wall),
        "stopped_early": stopped_early,
        "timed_out": bool(timed_out),
    }
