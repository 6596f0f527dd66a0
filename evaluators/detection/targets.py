"""Training targets and the detection loss of the ``detector`` space's dense softmax head.

Assignment (FCOS-like, with FPN's scale-to-level rule so that it agrees with DeFeat's masks):
every GT box goes to one level (``defeat.map_roi_levels`` with the detector's ``finest_scale``);
on that level, its positive locations are the points inside the box and within ``radius`` x
stride of its centre (FCOS centre sampling); a box that gets no point (tiny) takes the point
nearest its centre. A point claimed by several boxes goes to the smallest. Every other location
is background (label K).

Loss: softmax focal loss (gamma 2, Lin et al. 2017, on the K + 1 softmax) summed over all
locations and divided by the number of positives, plus the GIoU loss of the decoded boxes at the
positives (mean). Both are standard one-stage choices; neither comes from DeFeat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from supernets.boxes import generalized_iou
from supernets.detector import location_points

from .defeat import dense_logits, map_roi_levels


def assign(targets: Sequence[Mapping[str, torch.Tensor]], sizes: Sequence[tuple[int, int]], strides: Sequence[int],
           num_classes: int, finest_scale: float, radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels ``(B, P)`` with ``num_classes`` = background, matched GT boxes ``(B, P, 4)``)."""
    points = location_points(sizes, strides)
    level_of = torch.cat([torch.full((h * w,), i) for i, (h, w) in enumerate(sizes)])
    stride_of = torch.cat([torch.full((h * w,), float(s)) for (h, w), s in zip(sizes, strides)])
    labels, matched = [], []
    for t in targets:
        boxes, cls = t["boxes"].float().cpu(), t["labels"].long().cpu()
        lab = torch.full((len(points),), num_classes, dtype=torch.long)
        mbox = torch.zeros(len(points), 4)
        if len(boxes):
            lvl = map_roi_levels(boxes, len(sizes), finest_scale)
            px, py = points[:, :1], points[:, 1:]
            inside = (px > boxes[:, 0]) & (px < boxes[:, 2]) & (py > boxes[:, 1]) & (py < boxes[:, 3])
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            r = radius * stride_of[:, None]
            central = ((px - cx).abs() < r) & ((py - cy).abs() < r)
            on_level = level_of[:, None] == lvl[None, :]
            cand = inside & central & on_level
            dist = (px - cx) ** 2 + (py - cy) ** 2
            for g in torch.nonzero(~cand.any(0)).flatten().tolist():  # tiny boxes: nearest point on their level
                d = torch.where(on_level[:, g], dist[:, g], torch.full_like(dist[:, g], float("inf")))
                cand[int(d.argmin()), g] = True
            area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None, :].expand_as(dist)
            area = torch.where(cand, area, torch.full_like(area, float("inf")))
            best, gi = area.min(1)
            pos = torch.isfinite(best)
            lab[pos] = cls[gi[pos]]
            mbox[pos] = boxes[gi[pos]]
        labels.append(lab)
        matched.append(mbox)
    return torch.stack(labels), torch.stack(matched)


def softmax_focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Sum over rows of ``-(1 - p_t)^gamma log p_t`` with the K + 1 softmax."""
    logp = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return (-(1 - logp.exp()).pow(gamma) * logp).sum()


def detection_loss(out: Mapping[str, Sequence[torch.Tensor]], targets: Sequence[Mapping[str, torch.Tensor]], strides: Sequence[int],
                   num_classes: int, finest_scale: float) -> dict[str, torch.Tensor]:
    """``{"loss", "cls_loss", "box_loss", "labels"}``; ``labels`` ``(B * P,)`` is the assignment
    (DeFeat's positive/negative split uses the same one)."""
    cls = out["cls_logits"]
    sizes = [tuple(c.shape[-2:]) for c in cls]
    device = cls[0].device
    labels, matched = assign(targets, sizes, strides, num_classes, finest_scale)
    labels, matched = labels.to(device).flatten(), matched.to(device).reshape(-1, 4)
    logits = dense_logits(cls)
    pos = labels != num_classes
    n_pos = max(1, int(pos.sum()))
    cls_loss = softmax_focal_loss(logits, labels) / n_pos
    if pos.any():
        ltrb = torch.cat([b.flatten(2) for b in out["box_ltrb"]], 2).permute(0, 2, 1).reshape(-1, 4)[pos]
        p = location_points(sizes, strides, device).repeat(len(targets), 1)[pos]
        pred = torch.stack([p[:, 0] - ltrb[:, 0], p[:, 1] - ltrb[:, 1], p[:, 0] + ltrb[:, 2], p[:, 1] + ltrb[:, 3]], 1)
        box_loss = (1 - generalized_iou(pred, matched[pos])).mean()
    else:
        box_loss = logits.sum() * 0.0
    return {"loss": cls_loss + box_loss, "cls_loss": cls_loss.detach(), "box_loss": box_loss.detach(), "labels": labels}
