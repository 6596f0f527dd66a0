"""Training a weight-sharing supernet with Lightning, and scoring sub-networks with inherited weights.

:class:`SupernetModule` trains every step on the paths a :class:`~supernets.sampling.PathSampler`
draws (``uniform``, ``strict-fair``, ``sandwich``): all paths see the same batch, their losses
are summed and back-propagated once, so the gradient is the sum of the single-path gradients
(gradient accumulation in one backward, which DDP all-reduces once per step), followed by one
optimizer step. The technique recipes act as in any training: AdderNet's ALR rescales the
accumulated gradient in ``on_before_optimizer_step`` and ``set_progress`` schedules (lp norm,
FDA terms and noise) follow the epochs, through the same callbacks ``evaluate`` uses.

:func:`train_supernet` runs it in this process (resumable from Lightning's ``last.ckpt``);
:func:`train_supernet_distributed` runs it data-parallel through Ray Train's ``TorchTrainer``
(Lightning DDP, gloo on CPU). :func:`score_inherited` recalibrates batch norm for one
sub-network and measures it on fixed validation batches.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from ._quiet import quiet_lightning
from .callbacks import default_recipe_callbacks, scalar_metrics
from .classification import param_groups
from .errors import NonFiniteLossError

SUPERNET_FILE = "supernet.pt"      # the supernet's state_dict (torch.load(weights_only=True))
META_FILE = "supernet.json"        # what rebuilds it: space, fixed values, task, training summary
CKPT_DIR = "checkpoints"           # Lightning checkpoints (resume)
VAL_CHUNK = 512                    # validation images per forward when scoring with inherited weights


class SupernetModule(pl.LightningModule):
    """Lightning module of supernet training (manual optimization: m paths, one step).

    Validation reports ``val_accuracy_largest`` / ``val_accuracy_smallest`` (the largest and
    smallest paths with the supernet's shared batch-norm statistics; a training curve, not a
    sub-network's score, which needs recalibration) and ``val_accuracy`` (their mean).
    """

    def __init__(self, supernet: Any, sampler: Any, *, optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 5e-4, max_epochs: int = 10, scheduler: str = "cosine") -> None:
        super().__init__()
        self.automatic_optimization = False
        self.supernet = supernet
        self.sampler = sampler
        self.opt_name, self.lr, self.momentum, self.weight_decay = optimizer, float(lr), float(momentum), float(weight_decay)
        self.max_epochs, self.scheduler_name = int(max_epochs), scheduler
        layers = supernet.choice_layers()
        ends = []
        for idx in (-1, 0):
            ends.append({layer.label: (layer.choices[idx] if layer.ordered else layer.choices[0]) for layer in layers})
        self.reference_paths = {"largest": ends[0], "smallest": ends[1]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x)

    def path_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One path's training loss (classification: cross-entropy); image tasks override it."""
        return F.cross_entropy(output, target)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad()
        paths = self.sampler.paths()
        total = None
        for path in paths:
            self.supernet.set_active(path)
            loss = self.path_loss(self.supernet(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(float(loss.detach()), self.current_epoch, self.global_step, "train")
            total = loss if total is None else total + loss
        self.manual_backward(total)
        opt.step()
        self.log("train_loss", total.detach() / len(paths), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return total.detach()

    def on_train_epoch_end(self) -> None:
        sch = self.lr_schedulers()
        if sch is not None:
            sch.step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        accs = []
        for name, path in self.reference_paths.items():
            self.supernet.set_active(path)
            logits = self.supernet(x)
            acc = (logits.argmax(1) == y).float().mean()
            accs.append(acc)
            self.log(f"val_accuracy_{name}", acc, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            if name == "largest":
                self.log("val_loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log("val_accuracy", torch.stack(accs).mean(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        groups = param_groups(self.supernet, self.weight_decay)
        if self.opt_name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum)
        elif self.opt_name == "adam":
            opt = torch.optim.Adam(groups, lr=self.lr)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr)
        if self.scheduler_name == "none":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs, eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["path_sampler"] = json.dumps(self.sampler.state_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "path_sampler" in checkpoint:
            self.sampler.load_state_dict(json.loads(checkpoint["path_sampler"]))


class _EpochCurves(Callback):
    """Hands every epoch's scalar metrics to ``fn(epoch, metrics)`` (the driver logs them)."""

    def __init__(self, fn: Callable[[int, dict[str, float]], None] | None) -> None:
        self.fn = fn
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": float(trainer.current_epoch), **scalar_metrics(trainer)}
        self.history.append(row)
        if self.fn is not None and trainer.is_global_zero:
            self.fn(int(trainer.current_epoch), {k: v for k, v in row.items() if k != "epoch"})


def make_module(supernet: Any, *, sampling: str, epochs: int, lr: float = 0.05, optimizer: str = "sgd",
                weight_decay: float = 5e-4, seed: int = 0, sampler_options: Mapping[str, Any] | None = None,
                task: str = "classification", datamodule: Any = None) -> SupernetModule:
    """The training module for ``task``: classification (cross-entropy), translation (the GAN
    losses, ``evaluators.gan.GANSupernetModule``) or another image-to-image task (pixel L1,
    ``evaluators.supernet_image``)."""
    from supernets.sampling import make_path_sampler

    sampler = make_path_sampler(sampling, supernet.choice_layers(), seed=seed, **dict(sampler_options or {}))
    if task == "classification":
        return SupernetModule(supernet, sampler, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=epochs)
    from .supernet_image import image_supernet_module

    return image_supernet_module(task, supernet, sampler, datamodule, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=epochs)


def save_supernet(supernet: Any, out_dir: str | Path, summary: Mapping[str, Any] | None = None) -> Path:
    """``supernet.pt`` (state_dict) and ``supernet.json`` (space, fixed values, task) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SUPERNET_FILE + ".tmp")
    torch.save(supernet.state_dict(), tmp)
    os.replace(tmp, out / SUPERNET_FILE)
    meta = {"space": supernet.space.to_dict(), "fixed": supernet.fixed,
            "task": {k: list(v) if isinstance(v, tuple) else v for k, v in supernet.task.items()}, **dict(summary or {})}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return out


def load_supernet(out_dir: str | Path) -> Any:
    """The supernet saved by :func:`save_supernet` (weights loaded with ``weights_only=True``)."""
    from spaces import SearchSpace
    from supernets import build_supernet

    out = Path(out_dir)
    meta = json.loads((out / META_FILE).read_text())
    task = meta["task"]
    space = SearchSpace.from_dict(meta["space"])
    sn = build_supernet(space, input_shape=tuple(task["input_shape"]), num_classes=int(task["num_classes"]), fixed=meta["fixed"])
    sn.load_state_dict(torch.load(out / SUPERNET_FILE, weights_only=True, map_location="cpu"))
    return sn


def _trainer(epochs: int, callbacks: list[Callback], root: str, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(**{"accelerator": "cpu", "devices": 1, "max_epochs": int(epochs), "callbacks": callbacks, "logger": False,
                         "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                         "default_root_dir": root, **kwargs})


def train_supernet(supernet: Any, *, datamodule: Any, sampling: str = "strict-fair", epochs: int = 10, lr: float = 0.05,
                   optimizer: str = "sgd", weight_decay: float = 5e-4, seed: int = 0, sampler_options: Mapping[str, Any] | None = None,
                   out_dir: str | Path | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                   trainer_kwargs: Mapping[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Train ``supernet`` in place in this process; with ``out_dir`` a checkpoint is written every
    epoch under ``out_dir/checkpoints`` and training resumes from ``last.ckpt`` when one exists.
    Returns the per-epoch history, the sampler's counts and the wall time."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    with quiet_lightning(verbose):
        pl.seed_everything(seed, workers=True, verbose=False)
        module = make_module(supernet, sampling=sampling, epochs=epochs, lr=lr, optimizer=optimizer,
                             weight_decay=weight_decay, seed=seed, sampler_options=sampler_options,
                             task=getattr(datamodule, "task", "classification"), datamodule=datamodule)
        curves = _EpochCurves(on_epoch)
        callbacks: list[Callback] = [*default_recipe_callbacks(supernet), curves]
        ckpt_path = None
        with tempfile.TemporaryDirectory(prefix="abacus-supernet-") as tmp:
            root = tmp
            if out_dir is not None:
                ckpt_dir = Path(out_dir) / CKPT_DIR
                callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0, every_n_epochs=1))
                last = ckpt_dir / "last.ckpt"
                ckpt_path = str(last) if last.is_file() else None
            trainer = _trainer(epochs, callbacks, root, **dict(trainer_kwargs or {}))
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            wall = time.perf_counter() - start
    return {"history": curves.history, "counts": {k: dict(v) for k, v in module.sampler.counts.items()},
            "steps": module.sampler.steps, "wall_time_s": wall, "resumed_from": ckpt_path}


# -- data-parallel training through Ray Train ------------------------------------------------

def _distributed_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of :func:`train_supernet_distributed` (runs in every replica)."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    import evaluators
    from spaces import SearchSpace
    from supernets import build_supernet

    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    with quiet_lightning(config.get("verbose", False)):
        pl.seed_everything(config["seed"], workers=True, verbose=False)  # same init and paths on every replica
        space = SearchSpace.from_dict(config["space"])
        dm = evaluators.get_datamodule(config["data"], **config["data_kwargs"])
        sn = build_supernet(space, input_shape=tuple(dm.input_shape), num_classes=int(dm.num_classes), fixed=config["fixed"])
        module = make_module(sn, sampling=config["sampling"], epochs=config["epochs"], lr=config["lr"], optimizer=config["optimizer"],
                             weight_decay=config["weight_decay"], seed=config["seed"], sampler_options=config["sampler_options"],
                             task=getattr(dm, "task", "classification"), datamodule=dm)

        class _Report(Callback):
            """Every epoch: metrics and a checkpoint (Lightning's, plus the plain supernet files)."""

            def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                metrics = {"epoch": trainer.current_epoch, **scalar_metrics(trainer)}
                with tempfile.TemporaryDirectory() as tmp:
                    trainer.save_checkpoint(os.path.join(tmp, "last.ckpt"))
                    checkpoint = None
                    if trainer.is_global_zero:
                        save_supernet(sn, tmp, {"epochs_done": trainer.current_epoch + 1})
                        checkpoint = ray.train.Checkpoint.from_directory(tmp)
                    if config.get("dump_replicas"):
                        rank = ray.train.get_context().get_world_rank()
                        torch.save({n: p.detach().clone() for n, p in sn.named_parameters()},
                                   os.path.join(config["dump_replicas"], f"replica{rank}.pt"))
                    ray.train.report(metrics, checkpoint=checkpoint)

        trainer = pl.Trainer(accelerator="cpu", devices="auto", max_epochs=config["epochs"],
                             strategy=RayDDPStrategy(find_unused_parameters=True, process_group_backend="gloo"),
                             plugins=[RayLightningEnvironment()], callbacks=[*default_recipe_callbacks(sn), _Report()],
                             logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0)
        trainer = prepare_trainer(trainer)
        ckpt_path = None
        resume = ray.train.get_checkpoint()
        if resume is not None:
            with resume.as_directory() as d:
                local = os.path.join(tempfile.mkdtemp(prefix="abacus-resume-"), "last.ckpt")
                import shutil

                shutil.copy(os.path.join(d, "last.ckpt"), local)
                ckpt_path = local
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)


def train_supernet_distributed(*, space: Any, fixed: Mapping[str, Any], data: str, data_kwargs: Mapping[str, Any],
                               workers: int, out_dir: str | Path, sampling: str = "strict-fair", epochs: int = 10,
                               lr: float = 0.05, optimizer: str = "sgd", weight_decay: float = 5e-4, seed: int = 0,
                               sampler_options: Mapping[str, Any] | None = None, threads: int = 1,
                               dump_replicas: str | None = None, verbose: bool = False) -> dict[str, Any]:
    """Data-parallel supernet training on ``workers`` Ray Train workers (Lightning DDP, gloo).

    Every replica builds the same supernet and path sampler from the same seed, so all replicas
    train the same paths on their shard of each batch; DDP averages the gradients. The final
    supernet files land in ``out_dir`` (as :func:`save_supernet` writes them). A run interrupted
    before it finished resumes from its last checkpoint: Ray Train (v2) restores a run with the
    same name and storage path (``out_dir/ray_train/supernet``), and every replica restarts
    Lightning from the ``last.ckpt`` inside it (weights, optimizer, schedules, sampler state).
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = {"space": space.to_dict(), "fixed": dict(fixed), "data": data, "data_kwargs": dict(data_kwargs), "sampling": sampling,
              "epochs": int(epochs), "lr": float(lr), "optimizer": optimizer, "weight_decay": float(weight_decay), "seed": int(seed),
              "sampler_options": dict(sampler_options or {}), "threads": int(threads), "dump_replicas": dump_replicas, "verbose": verbose}
    trainer = TorchTrainer(
        _distributed_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=int(workers), use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="supernet", storage_path=str(out / "ray_train"), checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    start = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - start
    if result.error is not None:
        raise result.error
    history = []
    if result.metrics_dataframe is not None:
        history = [{k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
                   for row in result.metrics_dataframe.to_dict("records")]
    import shutil

    with result.checkpoint.as_directory() as d:
        for name in (SUPERNET_FILE, META_FILE):
            shutil.copy(os.path.join(d, name), out / name)
    return {"history": history, "wall_time_s": wall, "checkpoint": result.checkpoint.path}


# -- scoring with inherited weights ---------------------------------------------------------

@torch.no_grad()
def score_inherited(supernet: Any, arch: Mapping[str, Any], recal_batches: Sequence[torch.Tensor],
                    val_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Accuracy and loss of ``arch``'s path with inherited weights: set the path, recalibrate batch
    norm on ``recal_batches``, evaluate on ``val_batches`` in eval mode."""
    from supernets.supernet import recalibrate, set_path_mode

    supernet.set_active(arch)
    recalibrate(supernet, recal_batches)
    set_path_mode(supernet, False)  # eval mode on the active path only: walking every family's blocks costs more than a forward
    correct, loss, n = 0, 0.0, 0
    for x, y in val_batches:
        logits = supernet(x)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    acc = correct / max(n, 1)
    return {"val_accuracy": acc, "best_val_accuracy": acc, "val_loss": loss / max(n, 1)}


def recalibration_inputs(datamodule: Any, recalibration_batches: int, seed: int = 0) -> list[torch.Tensor]:
    """``recalibration_batches`` training-sized input batches of a seeded shuffle of the training
    set (the same for every candidate). One forward per training-sized batch: statistics averaged
    over batches of the size the supernet was trained with. Concatenating them into one larger
    forward saved ~20% CPU per candidate but lowered strict-fair's Kendall tau from 0.55 to 0.50
    (docs/results.md), so it is not done."""
    datamodule.setup("fit")
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(datamodule.train_set, batch_size=datamodule.batch_size, shuffle=True, generator=g)
    recal: list[torch.Tensor] = []
    for x, _ in loader:
        if len(recal) >= recalibration_batches:
            break
        recal.append(x)
    return recal


def fixed_batches(datamodule: Any, recalibration_batches: int, seed: int = 0) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The same recalibration inputs (``recalibration_batches`` batches of a seeded shuffle of the
    training set) and validation batches (the whole validation split, in chunks of up to
    ``VAL_CHUNK`` images) for every candidate, so inherited scores are comparable and
    reproducible."""
    recal = recalibration_inputs(datamodule, recalibration_batches, seed)
    pairs = [(x, y) for x, y in datamodule.val_dataloader()]
    if not pairs:
        return recal, []
    xs, ys = torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])
    val = [(xs[i:i + VAL_CHUNK], ys[i:i + VAL_CHUNK]) for i in range(0, len(ys), VAL_CHUNK)]  # fewer, larger forwards
    return recal, val
