"""The Lightning module for detection: the ``detector`` space's networks, optionally distilled.

Reports per epoch ``val_map`` (COCO mAP@[.5:.95]) and ``val_map50`` from a torchmetrics metric
computed by pycocotools' official COCOeval (``coco_map.py`` says why not torchmetrics' own
``MeanAveragePrecision``: it requires torchvision), plus ``val_loss`` and the training loss terms.
With a teacher and a model whose ``distill_config["method"]`` is ``fitnet`` or ``defeat``, the
DeFeat/FitNet terms (``evaluators.detection.defeat.DeFeatLoss``) are added; the adapters are
trained with the student but are not part of it (the deployed and costed network is the student).
The teacher is frozen and stays in eval mode whatever mode the module is put in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..training import TrainingModule
from .coco_map import COCOMeanAveragePrecision
from .defeat import DeFeatLoss, kd_weight
from .targets import detection_loss


class DetectionModule(TrainingModule):
    def __init__(self, model: nn.Module, teacher: nn.Module | None = None, optimizer: str = "sgd", lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 1e-4, max_epochs: int = 10, scheduler: str = "cosine",
                 nesterov: bool = False, score_threshold: float = 0.05) -> None:
        for attr in ("num_classes", "strides", "finest_scale", "postprocess"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a detector of the 'detector' space (it lacks {attr!r}), got {type(model).__name__}")
        super().__init__(model, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, max_epochs=max_epochs,
                         scheduler=scheduler, nesterov=nesterov)
        self.hparams.pop("teacher", None)  # a module, not a hyper-parameter (the base saves every init argument)
        config = dict(getattr(model, "distill_config", None) or {"method": "none"})
        self.method = str(config.get("method", "none"))
        self.distill: DeFeatLoss | None = None
        self.teacher: nn.Module | None = None
        if self.method != "none":
            if teacher is None:
                raise ValueError(f"defeat.method={self.method!r} needs a teacher: pass evaluator option 'teacher' (an exported detector directory)")
            if getattr(teacher, "num_classes", None) != model.num_classes or tuple(teacher.strides) != tuple(model.strides):
                raise ValueError("the teacher must be a detector with the student's classes and FPN strides")
            self.teacher = teacher.eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.distill = DeFeatLoss(config, model.fpn_channels, teacher.fpn_channels, len(model.strides))
            self.kd_schedule = self.distill.schedule
        self.val_map = COCOMeanAveragePrecision()

    def train(self, mode: bool = True) -> "DetectionModule":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def training_step(self, batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        out = self.model(images)
        m = self.model
        det = detection_loss(out, targets, m.strides, m.num_classes, m.finest_scale)
        loss = det["loss"]
        n = len(images)
        if self.distill is not None and self.teacher is not None:
            with torch.no_grad():
                t_out = self.teacher(images)
            w = kd_weight(self.kd_schedule, self.current_epoch, int(self.hparams.max_epochs))
            kd = self.distill(out, t_out, [t["boxes"] for t in targets], det["labels"], m.num_classes, m.strides, m.finest_scale, w)
            self.checked(kd["kd_loss"], "distillation")
            loss = loss + kd["kd_loss"]
            for k, v in kd.items():
                self.log(f"train_{k}", v.detach(), on_step=False, on_epoch=True, batch_size=n)
        loss = self.add_auxiliary(self.checked(loss, "train"), n)
        self.log("train_cls_loss", det["cls_loss"], on_step=False, on_epoch=True, batch_size=n)
        self.log("train_box_loss", det["box_loss"], on_step=False, on_epoch=True, batch_size=n)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]], batch_idx: int) -> None:
        images, targets = batch
        out = self.model(images)
        m = self.model
        det = detection_loss(out, targets, m.strides, m.num_classes, m.finest_scale)
        self.checked(det["loss"], "validation")
        self.log("val_loss", det["loss"], on_step=False, on_epoch=True, batch_size=len(images))
        preds = m.postprocess(out, tuple(images.shape[-2:]), score_threshold=float(self.hparams.score_threshold))
        self.val_map.update(preds, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])

    def on_validation_epoch_end(self) -> None:
        result = self.val_map.compute()
        self.val_map.reset()
        # torchmetrics reports -1 when no ground truth exists; that is "no score", not a score.
        for key, name in (("map", "val_map"), ("map_50", "val_map50")):
            v = float(result[key])
            self.log(name, max(v, 0.0) if v != -1 else float("nan"))

    def configure_optimizers(self) -> Any:
        """The base module's optimizer and schedule over the student, plus one group for the
        distillation adapters (trained with the student, same lr and weight decay)."""
        conf = super().configure_optimizers()
        if self.distill is not None:
            opt = conf["optimizer"] if isinstance(conf, dict) else conf
            lr = float(self.hparams.lr)
            opt.add_param_group({"params": [p for p in self.distill.parameters() if p.requires_grad],
                                 "weight_decay": float(self.hparams.weight_decay), "lr": lr, "initial_lr": lr})
            if isinstance(conf, dict):
                conf["lr_scheduler"]["scheduler"].base_lrs.append(lr)  # the cosine schedule covers the new group
        return conf
