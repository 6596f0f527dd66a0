"""One-shot mode for image-to-image tasks (super-resolution, paired translation): supernet
training and inherited-weight scoring of generators.

Training (:func:`image_supernet_module`): the paths a sampler draws for a step all see the same
batch. Translation trains with the GAN losses (``evaluators.gan.GANSupernetModule``: one
discriminator step on the paths' images, one generator step on the sum of the paths' pix2pix
losses); super-resolution with the pixel L1 to the target (:class:`ImageSupernetModule`, the SR
evaluator's loss). Losses are summed, back-propagated once, one optimizer step (strict fairness
as in ``evaluators.supernet``) [inferred: the coarse-to-fine paper's supernet loss is not published].

Scoring (:func:`score_image`): the path's output on fixed validation batches, measured with the
task's own metrics: PSNR / SSIM through :class:`~evaluators.image2image.SuperResolutionModule`'s
conventions for ``superres``; for other image tasks the task module's validation metrics when it
exposes them (``val_metrics``), and always ``val_loss`` (L1). Every candidate also gets its model
size (:func:`evaluators.metrics.model_size`, from the extracted sub-network).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from .supernet import SupernetModule, recalibration_inputs


class ImageSupernetModule(SupernetModule):
    """Supernet training on (input image, target image) batches with the pixel L1 loss."""

    def path_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        losses = []
        for name, path in self.reference_paths.items():
            self.supernet.set_active(path)
            loss = F.l1_loss(self.supernet(x), y)
            losses.append(loss)
            self.log(f"val_loss_{name}", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log("val_loss", torch.stack(losses).mean(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)


def image_supernet_module(task: str, supernet: Any, sampler: Any, datamodule: Any, **hp: Any) -> Any:
    """Supernet training for an image task: ``translation`` trains with the GAN losses
    (:class:`evaluators.gan.GANSupernetModule`, against the discriminator the task's own module
    builds for this data); others with the pixel L1 (:class:`ImageSupernetModule`)."""
    if task == "translation":
        from .gan import GANSupernetModule
        from .tasks import get_task

        disc = get_task(task).make_module(supernet, datamodule).discriminator
        return GANSupernetModule(supernet, disc, sampler, **hp)
    return ImageSupernetModule(supernet, sampler, **hp)


def metric_module(task: str, datamodule: Any, options: Mapping[str, Any] | None = None) -> Any:
    """The task's Lightning module around an identity model: its ``prepare`` / ``val_metrics``
    (super-resolution) or ``gen_metrics`` (translation: FID / KID on the extractor the task
    options name) are exactly what a trained candidate is scored with."""
    from torch import nn

    from .tasks import get_task

    opts = {k: v for k, v in dict(options or {}).items() if k in METRIC_OPTIONS}
    return get_task(task).make_module(nn.Identity(), datamodule, **opts)


# task options that decide how a candidate is measured (the others, e.g. a teacher, concern training)
METRIC_OPTIONS = ("fid_weights", "kid_subset_size")


def inherited_metrics(task: str) -> tuple[str, ...]:
    """What :func:`score_image` reports for ``task`` (the config check's list of objectives)."""
    from .tasks import get_task

    t = get_task(task)
    return tuple(m for m in t.metrics if not m.startswith("train_")) + SIZE_METRICS


SIZE_METRICS = ("params", "size_mb", "size_mib", "file_mb")


@torch.no_grad()
def score_image(supernet: Any, arch: Mapping[str, Any], recal_batches: Sequence[torch.Tensor],
                val_batches: Sequence[tuple[torch.Tensor, torch.Tensor]], scorer: Any, primary: str) -> dict[str, float]:
    """``arch``'s path with inherited weights: recalibrate normalisation statistics (if any), then
    the task metrics on ``val_batches`` in eval mode, and the sub-network's size."""
    from supernets import recalibrate

    from .metrics import count_params, model_size

    supernet.set_active(arch)
    recalibrate(supernet, recal_batches)
    supernet.eval()
    metrics = dict(getattr(scorer, "val_metrics", {}) or {})  # torchmetrics on prepared images (superres)
    generation = getattr(scorer, "gen_metrics", None)  # FID / KID on the task's extractor (translation)
    for m in metrics.values():
        m.reset()
    if generation is not None:
        generation.reset()
    loss, n = 0.0, 0
    for x, y in val_batches:
        pred = supernet(x)
        loss += float(F.l1_loss(pred, y, reduction="sum")) / pred[0].numel()
        n += len(y)
        if metrics:
            p, t = scorer.prepare(pred, y)
            for m in metrics.values():
                m.update(p, t)
        if generation is not None:
            generation.update(pred, y)
    out = {f"val_{name}": float(m.compute()) for name, m in metrics.items()}
    if generation is not None:
        out.update({f"val_{k}": float(v) for k, v in generation.compute().items()})
    out["val_loss"] = loss / max(n, 1)
    if primary in out:
        out[f"best_{primary}"] = out[primary]
    sub = supernet.extract(arch)
    return {**out, "params": float(count_params(sub)), **model_size(sub)}


def image_batches(datamodule: Any, recalibration_batches: int, seed: int = 0) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The same recalibration inputs and validation batches for every candidate (validation images
    may differ in size, so batches are kept as the loader makes them)."""
    recal = recalibration_inputs(datamodule, recalibration_batches, seed)
    return recal, [(x, y) for x, y in datamodule.val_dataloader()]
