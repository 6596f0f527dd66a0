"""Paired image-to-image translation with a conditional GAN (pix2pix; Isola et al., CVPR 2017,
arXiv 1611.07004), optionally distilled from a teacher generator (GAN compression / coarse-to-fine
GAN search, arXiv 2104.09223: the student also matches the teacher's output).

* :class:`PatchDiscriminator`: pix2pix's PatchGAN (``n_layers=3``: the 70x70 receptive field),
  conditioned on the input (it sees ``cat(x, y)``), instance norm (batch statistics of tiny
  batches are noise), LeakyReLU 0.2, one logit per patch.
* :class:`GANModule`: manual optimisation, per batch one discriminator step on
  ``0.5 * (L(D(x, y), real) + L(D(x, G(x)), fake))`` then one generator step on
  ``L(D(x, G(x)), real) + lambda_l1 * |G(x) - y|_1 + lambda_distill * |G(x) - T(x)|_1`` (the last
  term only with a teacher ``T``), plus the techniques' ``auxiliary_loss()`` terms. ``gan_mode``:
  ``vanilla`` (pix2pix's BCE-with-logits) or ``lsgan`` (MSE). Adam with betas (0.5, 0.999) when
  ``optimizer`` is ``adam``/``adamw`` (pix2pix: lr 2e-4). Validation logs ``val_fid``, ``val_kid``
  (``evaluators.fid``, on the extractor named by ``fid.extractor``) and ``val_loss`` (L1 to the target).

The loss pieces (:meth:`GANModule.discriminator_loss`, :meth:`GANModule.generator_loss`) are
methods so a supernet trainer can sum them over the paths of a step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fid import GenerationMetrics
from .training import TrainingModule, param_groups

__all__ = ["PatchDiscriminator", "GANModule", "GANSupernetModule", "GAN_MODES", "gan_loss", "patch_layers", "score_generator"]

GAN_MODES = ("vanilla", "lsgan")


class PatchDiscriminator(nn.Module):
    """pix2pix ``NLayerDiscriminator``: conv4x4 s2 (no norm) -> (n_layers - 1) x [conv4x4 s2, norm,
    LReLU] -> conv4x4 s1, norm, LReLU -> conv4x4 s1 to one logit per patch. Widths ``ndf * min(2^i, 8)``."""

    def __init__(self, in_channels: int, ndf: int = 16, n_layers: int = 3) -> None:
        super().__init__()
        if int(ndf) < 1 or int(n_layers) < 1:
            raise ValueError(f"PatchDiscriminator: ndf and n_layers must be positive ints, found {ndf!r}, {n_layers!r}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        prev = ndf
        for i in range(1, n_layers + 1):
            width = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(prev, width, 4, stride, 1, bias=False), nn.InstanceNorm2d(width), nn.LeakyReLU(0.2)]
            prev = width
        layers.append(nn.Conv2d(prev, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def patch_layers(size: int, most: int = 3) -> int:
    """The largest ``n_layers`` <= ``most`` whose PatchGAN still has >= 2x2 patches before its last
    conv on ``size``-pixel inputs (pix2pix's 3 from 32 px up; 2 at 16 px; 1 below)."""
    n = most
    while n > 1 and (size // 2) // 2 ** (n - 1) < 3:
        n -= 1
    return n


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """The GAN objective against an all-real or all-fake target."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"gan_mode: expected one of {', '.join(GAN_MODES)}, found {mode!r}")


class GANModule(TrainingModule):
    """Generator ``model`` trained against ``discriminator`` (see the module docstring).

    ``teacher``: a generator whose outputs the student also matches (frozen, eval mode);
    ``extractor``: the FID/KID feature extractor (default ``random-cnn-v1``)."""

    hparams_ignore = ("discriminator", "teacher", "extractor")

    def __init__(self, model: nn.Module, discriminator: nn.Module, teacher: nn.Module | None = None,
                 extractor: nn.Module | None = None, lambda_l1: float = 100.0, lambda_distill: float = 100.0,
                 gan_mode: str = "vanilla", optimizer: str = "adam", lr: float = 2e-4, momentum: float = 0.9,
                 weight_decay: float = 0.0, max_epochs: int = 10, scheduler: str = "cosine", nesterov: bool = False,
                 kid_subset_size: int = 50) -> None:
        if gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode: expected one of {', '.join(GAN_MODES)}, found {gan_mode!r}")
        for name, v in (("lambda_l1", lambda_l1), ("lambda_distill", lambda_distill)):
            if not float(v) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, found {v!r}")
        super().__init__(model, optimizer, lr, momentum, weight_decay, max_epochs, scheduler, nesterov)
        self.automatic_optimization = False
        self.discriminator = discriminator
        self.teacher = None if teacher is None else teacher.eval().requires_grad_(False)
        self.gen_metrics = GenerationMetrics(extractor, kid_subset_size=kid_subset_size)
        self.lambda_l1, self.lambda_distill, self.gan_mode = float(lambda_l1), float(lambda_distill), gan_mode

    @property
    def extractor_identity(self) -> str:
        return self.gen_metrics.identity

    # -- losses -----------------------------------------------------------------------------
    def discriminator_loss(self, x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real_logits = self.discriminator(torch.cat([x, y], dim=1))
        fake_logits = self.discriminator(torch.cat([x, fake.detach()], dim=1))
        return 0.5 * (gan_loss(real_logits, True, self.gan_mode) + gan_loss(fake_logits, False, self.gan_mode))

    def generator_loss(self, x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if fake.shape != y.shape:
            raise ValueError(f"generator output has shape {tuple(fake.shape)} but the target images have {tuple(y.shape)}")
        parts = {"gan": gan_loss(self.discriminator(torch.cat([x, fake], dim=1)), True, self.gan_mode),
                 "l1": self.lambda_l1 * F.l1_loss(fake, y)}
        if self.teacher is not None and self.lambda_distill > 0:
            with torch.no_grad():
                target = self.teacher(x)
            parts["distill"] = self.lambda_distill * F.l1_loss(fake, target)
        return torch.stack(list(parts.values())).sum(), parts

    # -- steps ------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        opt_g, opt_d = self.optimizers()
        fake = self.model(x)
        loss_d = self.checked(self.discriminator_loss(x, y, fake), "discriminator")
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        loss_g, parts = self.generator_loss(x, y, fake)
        loss_g = self.add_auxiliary(self.checked(loss_g, "train"), len(y))
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        opt_g.zero_grad()
        n = len(y)
        self.log("train_loss", loss_g.detach(), on_step=False, on_epoch=True, batch_size=n)
        self.log("train_d_loss", loss_d.detach(), on_step=False, on_epoch=True, batch_size=n)
        for name, value in parts.items():
            self.log(f"train_{name}_loss", value.detach(), on_step=False, on_epoch=True, batch_size=n)
        return loss_g.detach()

    def on_train_epoch_start(self) -> None:
        if self.teacher is not None:
            self.teacher.eval()

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
            sched.step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        fake = self.model(x)
        self.log("val_loss", self.checked(F.l1_loss(fake, y), "validation"), on_step=False, on_epoch=True, batch_size=len(y))
        self.gen_metrics.update(fake, y)

    def on_validation_epoch_start(self) -> None:
        self.gen_metrics.reset()

    def on_validation_epoch_end(self) -> None:
        values = self.gen_metrics.compute()
        self.log("val_fid", values["fid"], on_epoch=True)
        self.log("val_kid", values["kid"], on_epoch=True)
        self.gen_metrics.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.l1_loss(self.model(x), y), on_step=False, on_epoch=True, batch_size=len(y))

    # -- optimisers -------------------------------------------------------------------------
    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        hp = self.hparams
        groups = param_groups(module, hp.weight_decay)
        if hp.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov)
        cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
        return cls(groups, lr=hp.lr, betas=(0.5, 0.999), weight_decay=hp.weight_decay)

    def configure_optimizers(self) -> Any:
        opts = [self._optimizer(self.model), self._optimizer(self.discriminator)]
        if self.hparams.scheduler == "none":
            return opts
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=self.hparams.max_epochs, eta_min=0.0) for o in opts]
        return opts, scheds


class GANSupernetModule(GANModule):
    """Trains a weight-sharing generator supernet (``supernets.build_supernet("gan-generator", ...)``)
    with the GAN losses: per step the ``sampler`` (``supernets.make_path_sampler``: ``strict-fair``,
    ``uniform``, ``sandwich``) draws its paths; the discriminator takes one step on the mean of its
    losses over the paths' generated images, then the generator takes one step on the sum of the
    paths' generator losses (every choice of a strict-fair step gets exactly one gradient
    contribution, FairNAS). Validation scores the largest path (ordered layers at their last
    choice, operators at their first); sub-networks are scored with
    :func:`score_generator` after ``set_active``."""

    hparams_ignore = (*GANModule.hparams_ignore, "supernet", "sampler")

    def __init__(self, supernet: nn.Module, discriminator: nn.Module, sampler: Any, **kwargs: Any) -> None:
        super().__init__(supernet, discriminator, **kwargs)
        self.sampler = sampler

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        opt_g, opt_d = self.optimizers()
        paths = self.sampler.paths()
        fakes = []
        for path in paths:
            self.model.set_active(path)
            fakes.append(self.model(x))
        loss_d = self.checked(torch.stack([self.discriminator_loss(x, y, f) for f in fakes]).mean(), "discriminator")
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        loss_g = self.checked(torch.stack([self.generator_loss(x, y, f)[0] for f in fakes]).sum(), "train")
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        opt_g.zero_grad()
        n = len(y)
        self.log("train_loss", loss_g.detach() / len(paths), on_step=False, on_epoch=True, batch_size=n)
        self.log("train_d_loss", loss_d.detach(), on_step=False, on_epoch=True, batch_size=n)
        return loss_g.detach()

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        layers = self.model.choice_layers()
        self.model.set_active({layer.label: layer.choices[-1] if layer.ordered else layer.choices[0] for layer in layers})


@torch.no_grad()
def score_generator(model: nn.Module, batches: Any, metrics: GenerationMetrics | None = None) -> dict[str, float]:
    """``fid``, ``kid`` and ``l1`` (mean absolute error to the targets) of ``model`` (a generator,
    or a supernet after ``set_active``) in eval mode on ``batches`` of (input, target); the
    model's mode is restored. ``metrics`` (reset here) chooses the extractor (default ``random-cnn-v1``)."""
    metrics = metrics if metrics is not None else GenerationMetrics()
    metrics.reset()
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            fake = model(x)
            metrics.update(fake, y)
            total += float((fake - y).abs().sum())
            count += y.numel()
    finally:
        model.train(was_training)
    return {**metrics.compute(), "l1": total / max(count, 1)}
