"""Tasks: which Lightning module trains on a data module, and which metrics it reports.

A data module names its task (``BaseDataModule.task``); the task knows its Lightning module, its
primary validation metric (the one ``best_<metric>`` tracks) and the metrics an evaluation
returns and reports every epoch, so the search validates objectives and early stopping per task
without knowing any task by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # checking a config must not import Lightning or torch
    import pytorch_lightning as pl
    from torch import nn

__all__ = ["Task", "TASKS", "get_task", "task_of_data", "register_task"]


@dataclass(frozen=True)
class Task:
    """``make_module(model, datamodule, **hparams)`` builds the Lightning module; ``primary`` is the
    validation metric whose best value ``best_<primary>`` is kept (the largest when ``mode`` is
    ``"max"``, the smallest for ``"min"``: FID); ``per_epoch`` are the metrics known after every
    epoch (for early stopping); ``metrics`` are those ``evaluate`` returns (plus ``params``,
    ``macs``, ``size_mb``, ``wall_time_s``, ...). ``options`` are the task options ``evaluate``
    (and a config's ``evaluator.options``) accept; ``identity(options)`` names what the metric
    values depend on beyond the data (e.g. ``{"fid.extractor": "random-cnn-v1:..."}``): values
    with different identities are not comparable, and the search tools refuse to compare them."""

    name: str
    make_module: Callable[..., pl.LightningModule]
    primary: str
    per_epoch: tuple[str, ...]
    metrics: tuple[str, ...]
    mode: str = "max"
    options: tuple[str, ...] = ()
    identity: Callable[[Mapping[str, Any]], dict[str, str]] | None = None

    def metric_identity(self, options: Mapping[str, Any] | None = None) -> dict[str, str]:
        return dict(self.identity(dict(options or {}))) if self.identity is not None else {}

    @property
    def best(self) -> str:
        return f"best_{self.primary}"


def _classification(model: nn.Module, datamodule: Any, **hp: Any) -> pl.LightningModule:
    from .classification import ClassificationModule

    return ClassificationModule(model, num_classes=int(datamodule.num_classes), **hp)


def _superres(model: nn.Module, datamodule: Any, **hp: Any) -> pl.LightningModule:
    from .image2image import SuperResolutionModule

    return SuperResolutionModule(model, scale=int(datamodule.scale), **hp)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


register_task(Task("classification", _classification, "val_accuracy", ("val_accuracy", "best_val_accuracy", "val_loss"),
                   ("val_accuracy", "best_val_accuracy", "val_loss", "train_loss")))
register_task(Task("superres", _superres, "val_psnr", ("val_psnr", "best_val_psnr", "val_ssim", "val_loss"),
                   ("val_psnr", "best_val_psnr", "val_ssim", "val_loss", "train_loss")))


def _detection(model: nn.Module, datamodule: Any, **hp: Any) -> pl.LightningModule:
    # without a teacher; evaluators.evaluate hands detection runs to evaluate_detection, which adds one
    from .detection.module import DetectionModule

    return DetectionModule(model, None, **hp)


register_task(Task("detection", _detection, "val_map", ("val_map", "best_val_map", "val_map50", "val_loss"),
                   ("val_map", "best_val_map", "val_map50", "val_loss", "train_loss"),
                   options=("teacher", "teacher_epochs", "gradient_clip_val")))  # evaluators.detection.evaluate_detection

TRANSLATION_OPTIONS = ("teacher", "fid_weights", "lambda_l1", "lambda_distill", "gan_mode", "ndf", "kid_subset_size")


def _translation(model: nn.Module, datamodule: Any, *, teacher: str | None = None, fid_weights: str | None = None,
                 ndf: int = 16, **hp: Any) -> pl.LightningModule:
    from .fid import make_extractor
    from .gan import GANModule, PatchDiscriminator, patch_layers
    from .gan_teacher import load_generator

    channels = int(datamodule.input_shape[0]) + int(datamodule.builder_kwargs().get("out_channels", datamodule.input_shape[0]))
    disc = PatchDiscriminator(channels, int(ndf), patch_layers(min(datamodule.input_shape[1:])))
    return GANModule(model, disc, load_generator(teacher) if teacher else None,
                     make_extractor(fid_weights), **hp)


def _translation_identity(options: Mapping[str, Any]) -> dict[str, str]:
    from .fid import extractor_identity, make_extractor

    return {"fid.extractor": extractor_identity(make_extractor(options.get("fid_weights")))}


register_task(Task("translation", _translation, "val_fid", ("val_fid", "best_val_fid", "val_kid", "val_loss"),
                   ("val_fid", "best_val_fid", "val_kid", "val_loss", "train_loss", "train_d_loss"), mode="min",
                   options=TRANSLATION_OPTIONS, identity=_translation_identity))


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]


def task_of_data(name: str) -> Task:
    """The task of the data set registered as ``name`` (nothing is loaded; built-ins import nothing)."""
    from .data.registry import task_name_of

    return get_task(task_name_of(name))
