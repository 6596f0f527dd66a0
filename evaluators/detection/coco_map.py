"""COCO mAP as a torchmetrics ``Metric`` computed by pycocotools' ``COCOeval``.

Why not ``torchmetrics.detection.MeanAveragePrecision`` (checked against torchmetrics 1.9.0,
the installed version): it cannot run without torchvision *whatever its backend*.
``torchmetrics/detection/__init__.py`` only exports the class when ``_TORCHVISION_AVAILABLE``;
importing it from ``torchmetrics.detection.mean_ap`` directly still fails in ``__init__``, which
raises ``ModuleNotFoundError("Metric `bbox` requires that `torchvision` is installed")`` after
the backend check, for ``backend="pycocotools"`` and ``backend="faster_coco_eval"`` alike; and its
``update`` converts boxes with ``torchvision.ops.box_convert`` (``detection/helpers.py``). So
installing faster-coco-eval would not help, and torchvision from PyPI does not install beside this
torch (it pins its own torch build). ``tests/evaluators/test_detection_map_nms.py`` re-checks the
refusal, so this wrapper can be dropped the day torchmetrics stops needing torchvision.
This metric does what that class does with its ``pycocotools`` backend: keep every
image's predictions and ground truth (list states, concatenated across processes), then build a
COCO ground-truth object and the detections, and run the official ``COCOeval`` for ``bbox``
(101-point interpolated AP, IoU thresholds 0.50:0.05:0.95, up to 100 detections per image).
Boxes are ``xyxy`` in pixels; COCO's ``[x, y, w, h]`` conversion happens here.

``compute()`` returns ``{"map", "map_50", "map_75"}`` as tensors; -1 means "no ground truth at
all" (COCOeval's convention, kept).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torchmetrics import Metric


class COCOMeanAveragePrecision(Metric):
    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, max_detections: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_detections = int(max_detections)
        for name in ("pred_boxes", "pred_scores", "pred_labels", "gt_boxes", "gt_labels"):
            self.add_state(name, default=[], dist_reduce_fx=None)

    def update(self, preds: Sequence[Mapping[str, torch.Tensor]], target: Sequence[Mapping[str, torch.Tensor]]) -> None:
        if len(preds) != len(target):
            raise ValueError(f"preds and target must hold one entry per image, got {len(preds)} and {len(target)}")
        for p, t in zip(preds, target):
            self.pred_boxes.append(p["boxes"].detach().float().reshape(-1, 4).cpu())
            self.pred_scores.append(p["scores"].detach().float().reshape(-1).cpu())
            self.pred_labels.append(p["labels"].detach().long().reshape(-1).cpu())
            self.gt_boxes.append(t["boxes"].detach().float().reshape(-1, 4).cpu())
            self.gt_labels.append(t["labels"].detach().long().reshape(-1).cpu())

    def compute(self) -> dict[str, torch.Tensor]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        images, anns, dets = [], [], []
        classes: set[int] = set()
        for i, (gb, gl) in enumerate(zip(self.gt_boxes, self.gt_labels)):
            images.append({"id": i})
            for box, lab in zip(gb.tolist(), gl.tolist()):
                w, h = box[2] - box[0], box[3] - box[1]
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(lab), "bbox": [box[0], box[1], w, h],
                             "area": w * h, "iscrowd": 0})
                classes.add(int(lab))
        for i, (pb, ps, pl) in enumerate(zip(self.pred_boxes, self.pred_scores, self.pred_labels)):
            for box, s, lab in zip(pb.tolist(), ps.tolist(), pl.tolist()):
                dets.append([i, box[0], box[1], box[2] - box[0], box[3] - box[1], s, int(lab)])
                classes.add(int(lab))
        if not anns:
            return {k: torch.tensor(-1.0) for k in ("map", "map_50", "map_75")}
        with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress lines
            gt = COCO()
            gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(classes)]}
            gt.createIndex()
            dt = gt.loadRes(np.asarray(dets, dtype=np.float64)) if dets else COCO()
            if not dets:
                dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
                dt.createIndex()
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.maxDets = [1, 10, self.max_detections]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        s = ev.stats
        return {"map": torch.tensor(float(s[0])), "map_50": torch.tensor(float(s[1])), "map_75": torch.tensor(float(s[2]))}
