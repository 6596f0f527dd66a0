"""Builder of the ``detector`` space: ResNet backbone (per-stage ops) + FPN + dense softmax head.

Layout (see ``spaces/detector.py`` for why one-stage and a softmax head):

* stem: float conv3x3 stride 2 + BN + ReLU (a standard conv stem, as in the ``addernet-resnet``
  space); then the three ``addernet-resnet`` stages built from ``supernets.resnet.BasicBlock``
  and ``make_op`` (strides 1, 2, 2 -> feature strides 2, 4, 8);
* FPN (Lin et al. 2017): 1x1 laterals on the stride-4 and stride-8 stages, nearest-neighbour
  top-down addition, 3x3 output convs, and one 3x3 stride-2 conv on P4 for P5 (RetinaNet's
  extra level); levels P3/P4/P5 at strides 4/8/16, ``fpn.channels`` wide; no activations;
* head: ``head.convs`` x (conv3x3 + GroupNorm + ReLU) shared across levels (FCOS), then a 3x3
  classifier to K + 1 logits (index K = background; its bias starts at log(99 K), so every
  location starts at 1% foreground probability) and a 3x3 regressor of ltrb distances
  ``relu(x) * stride`` (FCOS's normalised-regression variant).

``forward`` returns ``{"features": [P3, P4, P5], "cls_logits": [...], "box_ltrb": [...]}`` in
both modes: the raw per-level outputs that DeFeat distils and that hw_cost traces. Decoding and
NMS (``postprocess``) are *not* part of ``forward``: on an FPGA deployment they run on the host
CPU (as Vitis-AI-style detectors do), so hw_cost costs the network up to the head outputs and
post-processing is reported as not costed (docs/cost-model.md).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernets.boxes import batched_nms
from supernets.ops import get_op
from supernets.resnet import BASE_WIDTHS, STRIDES, BasicBlock, stage_width

FPN_STRIDES = (4, 8, 16)


def neck_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, bits: int = 32) -> nn.Module:
    """A conv with bias for the FPN and head: float at 32 bits, ``QuantConv2d`` below."""
    if bits >= 32:
        return nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=True)
    return get_op("quant_conv")(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=True, bits=bits)


class Backbone(nn.Module):
    """Stride-2 conv stem + the three ResNet stages; returns the stride-4 and stride-8 outputs."""

    def __init__(self, in_ch: int, stages: Sequence[Mapping[str, Any]], recipe: Mapping[str, Any]) -> None:
        super().__init__()
        w0 = stages[0]["width"]
        self.stem = nn.Sequential(nn.Conv2d(in_ch, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        prev = w0
        self.stages = nn.ModuleList()
        for spec, stride in zip(stages, STRIDES):
            blocks = []
            for b in range(spec["blocks"]):
                blocks.append(BasicBlock(spec["op"], prev, spec["width"], stride if b == 0 else 1, spec["bits"], recipe))
                prev = spec["width"]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = (stages[1]["width"], stages[2]["width"])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        c2 = self.stages[1](self.stages[0](x))
        c3 = self.stages[2](c2)
        return [c2, c3]


class FPN(nn.Module):
    def __init__(self, in_channels: Sequence[int], channels: int, bits: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(neck_conv(c, channels, 1, bits=bits) for c in in_channels)
        self.output = nn.ModuleList(neck_conv(channels, channels, 3, bits=bits) for _ in in_channels)
        self.extra = neck_conv(channels, channels, 3, stride=2, bits=bits)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        outs = [conv(t) for conv, t in zip(self.output, lat)]
        outs.append(self.extra(outs[-1]))
        return outs


class DenseHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, convs: int, bits: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [neck_conv(channels, channels, 3, bits=bits), nn.GroupNorm(min(8, channels), channels), nn.ReLU()]
        self.tower = nn.Sequential(*layers)
        self.cls = neck_conv(channels, num_classes + 1, 3, bits=bits)
        self.reg = neck_conv(channels, 4, 3, bits=bits)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.reg.weight, std=0.01)
        with torch.no_grad():
            self.cls.bias.zero_()
            self.cls.bias[num_classes] = math.log(99.0 * num_classes)
            self.reg.bias.fill_(1.0)

    def forward(self, x: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower(x)
        return self.cls(t), F.relu(self.reg(t)) * stride


class Detector(nn.Module):
    """Backbone + FPN + dense head. ``num_classes`` excludes the background class."""

    def __init__(self, in_ch: int, num_classes: int, stages: Sequence[Mapping[str, Any]], fpn_channels: int, head_convs: int,
                 head_bits: int, recipe: Mapping[str, Any], distill: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = FPN_STRIDES
        self.fpn_channels = int(fpn_channels)
        # Box scale that maps to the finest level, for level assignment (targets and DeFeat masks):
        # sqrt(area) < 3 * stride0 -> P3, < 6 * stride0 -> P4, else P5 (the RoI mapping rule of FPN Eq. 1
        # with DeFeat's floor(log2(scale / finest_scale)), scaled to this detector's strides).
        self.finest_scale = 3.0 * FPN_STRIDES[0]
        self.backbone = Backbone(in_ch, stages, recipe)
        self.fpn = FPN(self.backbone.out_channels, fpn_channels, head_bits)
        self.head = DenseHead(fpn_channels, num_classes, head_convs, head_bits)
        # The training recipe (DeFeat / FitNet / none) as plain data; evaluators.detection reads it.
        self.distill_config: dict[str, Any] = dict(distill or {"method": "none"})

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        feats = self.fpn(self.backbone(x))
        cls, box = [], []
        for f, s in zip(feats, self.strides):
            c, b = self.head(f, s)
            cls.append(c)
            box.append(b)
        return {"features": feats, "cls_logits": cls, "box_ltrb": box}

    @torch.no_grad()
    def postprocess(self, out: Mapping[str, Sequence[torch.Tensor]], image_size: tuple[int, int], *, score_threshold: float = 0.05,
                    pre_nms_top_k: int = 200, iou_threshold: float = 0.5, max_detections: int = 50) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes", "scores", "labels"}``: softmax scores of the K object classes above
        ``score_threshold``, the ``pre_nms_top_k`` best, class-aware NMS, ``max_detections`` kept."""
        points = location_points([tuple(c.shape[-2:]) for c in out["cls_logits"]], self.strides, out["cls_logits"][0].device)
        probs = torch.cat([c.flatten(2) for c in out["cls_logits"]], 2).softmax(1)[:, : self.num_classes]  # (B, K, P)
        ltrb = torch.cat([b.flatten(2) for b in out["box_ltrb"]], 2)  # (B, 4, P)
        h, w = image_size
        results = []
        for i in range(probs.shape[0]):
            scores = probs[i].t()  # (P, K)
            loc, cls = torch.nonzero(scores > score_threshold, as_tuple=True)
            s = scores[loc, cls]
            if len(s) > pre_nms_top_k:
                s, top = s.topk(pre_nms_top_k)
                loc, cls = loc[top], cls[top]
            d = ltrb[i][:, loc].t()
            p = points[loc]
            boxes = torch.stack([p[:, 0] - d[:, 0], p[:, 1] - d[:, 1], p[:, 0] + d[:, 2], p[:, 1] + d[:, 3]], 1)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            keep = batched_nms(boxes, s, cls, iou_threshold)[:max_detections]
            results.append({"boxes": boxes[keep], "scores": s[keep], "labels": cls[keep]})
        return results


def location_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Image coordinates ``(P, 2)`` (x, y) of every location, level after level, row-major:
    the centre ``(j + 0.5) * stride`` of each cell."""
    pts = []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        pts.append(torch.stack([(xs.flatten() + 0.5) * s, (ys.flatten() + 0.5) * s], 1).float())
    return torch.cat(pts)


DISTILL_KEYS = ("method", "adapter", "kd_schedule", "alpha_obj", "use_neck", "alpha_bg", "mask", "use_head", "beta_obj",
                "beta_bg", "T_obj", "T_bg", "fgfi_psi")


def build_detector(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (1, 64, 64), num_classes: int = 10, **_: Any) -> nn.Module:
    """Build from a validated ``detector`` architecture for images ``input_shape`` (C, H, W)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
    if min(input_shape[1:]) < FPN_STRIDES[-1]:
        raise ValueError(f"input_shape: height and width must be at least {FPN_STRIDES[-1]} (the coarsest FPN stride), found {tuple(input_shape)!r}")
    stages = [
        {"op": arch[f"stage{s}.op"], "bits": int(arch.get(f"stage{s}.bits", 32)),
         "width": stage_width(BASE_WIDTHS[s - 1], float(arch[f"stage{s}.width"])), "blocks": int(arch[f"stage{s}.blocks"])}
        for s in (1, 2, 3)
    ]
    recipe = {k.split(".", 1)[1]: v for k, v in arch.items() if k.startswith("recipe.")}
    distill = {k: arch[f"defeat.{k}"] for k in DISTILL_KEYS if f"defeat.{k}" in arch}
    return Detector(int(input_shape[0]), int(num_classes), stages, int(arch["fpn.channels"]), int(arch["head.convs"]),
                    int(arch["head.bits"]), recipe, distill)
