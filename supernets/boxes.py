"""Box operations on ``(N, 4)`` xyxy tensors: IoU, generalised IoU, greedy NMS.

Why our own NMS: torchvision's ``nms`` is the op a user would reach for, but torchvision from
PyPI does not install beside this torch, and no small PyPI package provides a torch NMS. Greedy
NMS is short: sort by score, compute the IoU matrix once, walk it keeping a box unless a kept
box overlaps it by more than the threshold (ties in IoU: ``>`` suppresses, as torchvision).
Class-aware NMS offsets each class's boxes so boxes of different classes never overlap (the
``batched_nms`` trick).
"""

from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(len(a), len(b))``; boxes without area give 0."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of paired boxes ``a[i]``, ``b[i]`` (Rezatofighi et al. 2019)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    iou = inter / (union + eps)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + eps)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, in decreasing score order."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])
    n = len(order)
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    over = (iou > iou_threshold).cpu()
    sup = suppressed.cpu()
    for i in range(n):
        if sup[i]:
            continue
        keep.append(i)
        sup |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)
