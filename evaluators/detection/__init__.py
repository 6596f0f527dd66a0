"""Object detection: the Lightning module, DeFeat distillation, targets, teachers, evaluation.

* ``evaluate_detection``: train one ``detector``-space network, report ``val_map`` per epoch;
* ``DetectionModule``: the Lightning module (torchmetrics ``MeanAveragePrecision``);
* ``defeat``: DeFeat's masks, adapters, neck and head losses (``DeFeatLoss``);
* ``targets``: location assignment and the one-stage detection loss;
* ``teacher``: train / export / load the teacher (``python -m evaluators.detection.teacher``).
"""

from .defeat import DeFeatLoss, gt_masks, head_loss, make_adapter, map_roi_levels, neck_loss, tempered_kl
from .evaluate import evaluate_detection
from .module import DetectionModule
from .teacher import ensure_teacher, load_teacher, train_teacher

__all__ = ["DeFeatLoss", "DetectionModule", "ensure_teacher", "evaluate_detection", "gt_masks", "head_loss", "load_teacher",
           "make_adapter", "map_roi_levels", "neck_loss", "tempered_kl", "train_teacher"]
