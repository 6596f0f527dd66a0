"""DeFeat (Guo et al., CVPR 2021, arXiv 2103.14475): decoupled feature distillation losses.

Written from the release (ggjy/DeFeat.pytorch @ c46a793: ``mmdet/apis/train.py`` losses,
``two_stage_kd.py`` adapters, ``anchor_head.py`` ``get_gt_mask`` / ``_map_roi_levels``) as
summarised in ``techniques/vision-generative-detection.md`` section 3:

* neck: per FPN level, ``L_obj = sum(M D^2) / max(1, 2 C sum M)`` and
  ``L_bg = sum((1 - M) D^2) / max(1, 2 C sum(1 - M))`` with ``D = adapter(F_s) - F_t``, sums over
  the whole batch; ``L_neck = alpha_obj mean_l L_obj + alpha_bg mean_l L_bg``. A level without
  object cells has ``L_obj = 0`` and still counts in the mean (the release's dilution, kept);
* masks: every GT box goes to one level by ``floor(log2(sqrt((w+1)(h+1)) / finest_scale + 1e-6))``
  (the release's RoI mapping with finest_scale 56 for 800-px images; the ``detector`` space
  uses 3 x its finest stride), is divided by the stride and truncated with ``int``; cells
  ``[ly:ry, lx:rx]`` are object cells (a degenerate box marks ``(ly, lx)``);
* head: ``KL_set(T) = T^2 / |set| sum_set KL(softmax(z_t / T) || softmax(z_s / T))``;
  ``L_head = beta_obj KL_pos(T_obj) + beta_bg KL_neg(T_bg)``; an empty set gives 0;
* masks besides the release's: ``gt_all_levels`` (every box on every level), ``fgfi_roi`` (FGFI's
  prior-IoU region, see :func:`fgfi_masks` for how it is carried to an anchor-free FPN) and
  ``all_ones`` (FitNet);
* adapter: conv3x3 (padding 1, no activation), weight ``N(0, 1).fmod(2) * 1e-4``, PyTorch's
  default bias; so it is *not* an identity at initialisation.

Release quirks, decided here:

* ``head_cls_back_T`` is never read by the release (the background KL uses ``head_cls_T``). We
  honour ``T_bg`` (the paper's intent); ``T_bg == T_obj`` reproduces the release.
* The release's default proposal mode (SampleTEA) splits RoIs with labels of a different RoI set
  than the logits. Our dense head has one location grid shared by teacher and student, so the
  positive/negative split always comes from the same assignment as the logits (SampleSTU
  semantics); there is no proposal-mode dimension.
* The release takes the background index as ``labels.max()``; ours is fixed at K (the same
  whenever a batch has a background location, i.e. always in practice).
* Negatives: the release KLs over Faster R-CNN's 512 sampled RoIs per image (1:3 fg:bg); a dense
  head has no sampler, so the negative term averages over *every* background location.
* The KD-weight schedule (``constant`` as shipped, ``linear_decay`` = 1 - e/E, ``cosine_decay``
  = 0.5 cos(pi e/E) + 0.5) multiplies every distillation term, per epoch, as ``runner_kd.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MASKS = ("gt_per_level", "gt_all_levels", "fgfi_roi", "all_ones")
FGFI_RATIOS = (0.5, 1.0, 2.0)
ADAPTERS = ("conv3x3", "conv1x1", "identity")
SCHEDULES = ("constant", "linear_decay", "cosine_decay")


def map_roi_levels(boxes: torch.Tensor, num_levels: int, finest_scale: float = 56.0) -> torch.Tensor:
    """Level of every box (release ``_map_roi_levels``, with the +1 pixel convention)."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=num_levels - 1).long()


def gt_masks(boxes: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]], strides: Sequence[int], *,
             finest_scale: float = 56.0, mode: str = "gt_per_level", fgfi_psi: float = 0.5,
             device: torch.device | None = None) -> list[torch.Tensor]:
    """Object masks ``(B, H_l, W_l)`` in {0, 1}, one per level (release ``get_gt_mask``).

    ``mode``: ``gt_per_level`` (each box on its own level), ``gt_all_levels`` (each box on every
    level), ``fgfi_roi`` (FGFI's prior-IoU imitation region, :func:`fgfi_masks` with ``fgfi_psi``)
    or ``all_ones`` (every cell an object cell: plain FitNet imitation).
    """
    if mode not in MASKS:
        raise ValueError(f"defeat.mask: expected one of {list(MASKS)}, found {mode!r}")
    n_lvl = len(sizes)
    masks = [torch.zeros(len(boxes), h, w, device=device) for h, w in sizes]
    if mode == "all_ones":
        return [m.fill_(1.0) for m in masks]
    if mode == "fgfi_roi":
        return fgfi_masks(boxes, sizes, strides, psi=fgfi_psi, device=device)
    for b, bx in enumerate(boxes):
        if len(bx) == 0:
            continue
        bx = bx.detach().float().cpu()
        levels = map_roi_levels(bx, n_lvl, finest_scale) if mode == "gt_per_level" else None
        for level, ((h, w), s) in enumerate(zip(sizes, strides)):
            sel = bx if levels is None else bx[levels == level]
            for x1, y1, x2, y2 in (sel / s).tolist():
                lx, rx = max(int(x1), 0), min(int(x2), w)
                ly, ry = max(int(y1), 0), min(int(y2), h)
                if lx == rx or ly == ry:
                    masks[level][b, min(ly, h - 1), min(lx, w - 1)] = 1.0
                else:
                    masks[level][b, ly:ry, lx:rx] = 1.0
    return masks


def fgfi_masks(boxes: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]], strides: Sequence[int], *, psi: float = 0.5,
               anchor_scale: float = 4.0, ratios: Sequence[float] = FGFI_RATIOS, device: torch.device | None = None) -> list[torch.Tensor]:
    """FGFI's imitation region (Wang et al., CVPR 2019, arXiv 1906.03609) as ``(B, H_l, W_l)`` masks.

    FGFI marks, for every GT box, the locations having a prior box whose IoU with it exceeds
    ``psi`` x the best IoU any prior reaches with that box (psi = 0.5 in the paper); the union over
    boxes is the mask. FGFI is single-level and anchor-based; the ``detector`` head is anchor-free
    on an FPN, so (derived, not from either paper) the priors are RetinaNet-like boxes centred on
    every location, ``anchor_scale`` x stride on a side at ``ratios`` (h/w, equal area), and the best
    IoU is taken over *every* level: the mask then lies on the levels whose priors fit the box.
    """
    from supernets.boxes import box_iou
    from supernets.detector import location_points

    if not 0.0 < float(psi) <= 1.0:
        raise ValueError(f"defeat.fgfi_psi: expected a value in (0, 1], found {psi!r}")
    masks = [torch.zeros(len(boxes), h, w, device=device) for h, w in sizes]
    priors, level_of = [], []
    for i, ((h, w), s) in enumerate(zip(sizes, strides)):
        pts = location_points([(h, w)], [s])
        for r in ratios:
            pw, ph = anchor_scale * s / math.sqrt(r), anchor_scale * s * math.sqrt(r)
            priors.append(torch.cat([pts - torch.tensor([pw / 2, ph / 2]), pts + torch.tensor([pw / 2, ph / 2])], 1))
            level_of.append(i)
    for b, bx in enumerate(boxes):
        if len(bx) == 0:
            continue
        bx = bx.detach().float().cpu()
        ious = [box_iou(p, bx) for p in priors]  # one (H_l * W_l, n) block per level and ratio
        best = torch.stack([m.max(0).values for m in ious]).max(0).values  # (n,) best prior of every box
        for iou, level in zip(ious, level_of):
            h, w = sizes[level]
            hit = ((iou > float(psi) * best) & (best > 0)).any(1).reshape(h, w)
            masks[level][b][hit.to(masks[level].device)] = 1.0
    return masks


def make_adapter(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """The release's adaptation layer: conv (no activation), weight N(0,1).fmod(2) * 1e-4."""
    if kind == "identity":
        if in_channels != out_channels:
            raise ValueError(f"defeat.adapter=identity needs the student's FPN channels ({in_channels}) to equal the teacher's ({out_channels})")
        return nn.Identity()
    if kind not in ADAPTERS:
        raise ValueError(f"defeat.adapter: expected one of {list(ADAPTERS)}, found {kind!r}")
    k = 3 if kind == "conv3x3" else 1
    conv = nn.Conv2d(in_channels, out_channels, k, padding=k // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight).fmod(2) * 1e-4)
    return conv


def neck_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
              alpha_obj: float, alpha_bg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha-weighted total, mean_l L_obj, mean_l L_bg); ``student`` already adapted."""
    obj, bg = [], []
    for s, t, m in zip(student, teacher, masks):
        d2 = (s - t.detach()).pow(2)
        c = s.shape[1]
        m = m.to(d2.dtype).unsqueeze(1)
        obj.append((d2 * m).sum() / max(1.0, 2.0 * c * float(m.sum())))
        bg.append((d2 * (1 - m)).sum() / max(1.0, 2.0 * c * float((1 - m).sum())))
    l_obj, l_bg = torch.stack(obj).mean(), torch.stack(bg).mean()
    return alpha_obj * l_obj + alpha_bg * l_bg, l_obj, l_bg


def tempered_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 / N sum_r KL(softmax(z_t/T) || softmax(z_s/T))`` over rows ``(N, K+1)``; 0 for N = 0."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    t = float(temperature)
    # log_target: the same sum as the release's kl_div(log_softmax(s/T), softmax(t/T)), but exactly 0 when s == t
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits.detach() / t, dim=1), reduction="sum",
                  log_target=True)
    return kl / student_logits.shape[0] * t * t


def head_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, background: int, *,
              beta_obj: float, beta_bg: float, T_obj: float, T_bg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(beta-weighted total, KL_pos, KL_neg) on rows split by ``labels`` (``== background``: negative)."""
    pos = labels != background
    kl_pos = tempered_kl(student_logits[pos], teacher_logits[pos], T_obj)
    kl_neg = tempered_kl(student_logits[~pos], teacher_logits[~pos], T_bg)
    return beta_obj * kl_pos + beta_bg * kl_neg, kl_pos, kl_neg


def kd_weight(schedule: str, epoch: int, max_epochs: int) -> float:
    """Per-epoch multiplier of every distillation term (``runner_kd.py``)."""
    if schedule == "constant":
        return 1.0
    frac = epoch / max(1, max_epochs)
    if schedule == "linear_decay":
        return 1.0 - frac
    if schedule == "cosine_decay":
        return 0.5 * math.cos(math.pi * frac) + 0.5
    raise ValueError(f"defeat.kd_schedule: expected one of {list(SCHEDULES)}, found {schedule!r}")


def dense_logits(levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level ``(B, K+1, H, W)`` logits -> ``(B * P, K+1)`` rows, in ``location_points`` order."""
    return torch.cat([c.flatten(2) for c in levels], 2).permute(0, 2, 1).reshape(-1, levels[0].shape[1])


class DeFeatLoss(nn.Module):
    """The distillation terms for one configuration; owns the trainable adapters.

    ``config`` holds the ``defeat.*`` values without the prefix (``method``, ``alpha_obj``, ...).
    ``method``: ``fitnet`` = neck loss with an all-ones mask (so L_bg = 0) weighted by alpha_obj,
    no head term; ``defeat`` = decoupled neck (if ``use_neck``) and head (if ``use_head``) losses.
    """

    def __init__(self, config: Mapping[str, object], student_channels: int, teacher_channels: int, num_levels: int) -> None:
        super().__init__()
        self.method = str(config.get("method", "none"))
        if self.method not in ("fitnet", "defeat"):
            raise ValueError(f"defeat.method: DeFeatLoss needs 'fitnet' or 'defeat', found {self.method!r}")
        self.schedule = str(config.get("kd_schedule", "constant"))
        self.use_neck = self.method == "fitnet" or bool(config.get("use_neck", True))
        self.use_head = self.method == "defeat" and bool(config.get("use_head", True))
        self.mask = "all_ones" if self.method == "fitnet" else str(config.get("mask", "gt_per_level"))
        self.alpha_obj = float(config.get("alpha_obj", 3.0))
        self.alpha_bg = 0.0 if self.method == "fitnet" else float(config.get("alpha_bg", 12.0))
        self.beta_obj, self.beta_bg = float(config.get("beta_obj", 2.0)), float(config.get("beta_bg", 2.0))
        self.T_obj, self.T_bg = float(config.get("T_obj", 1.0)), float(config.get("T_bg", 1.0))
        self.fgfi_psi = float(config.get("fgfi_psi", 0.5))
        kind = str(config.get("adapter", "conv3x3"))
        self.adapters = nn.ModuleList(make_adapter(kind, student_channels, teacher_channels) for _ in range(num_levels)) if self.use_neck else nn.ModuleList()

    def forward(self, student: Mapping[str, Sequence[torch.Tensor]], teacher: Mapping[str, Sequence[torch.Tensor]],
                boxes: Sequence[torch.Tensor], labels: torch.Tensor, background: int, strides: Sequence[int],
                finest_scale: float, weight: float = 1.0) -> dict[str, torch.Tensor]:
        """``labels``: ``(B * P,)`` assignment of every location (``background`` = negative)."""
        zero = student["cls_logits"][0].sum() * 0.0
        out = {"kd_loss": zero, "kd_neck_obj": zero.detach(), "kd_neck_bg": zero.detach(), "kd_head_pos": zero.detach(),
               "kd_head_neg": zero.detach()}
        total = zero
        if self.use_neck:
            feats = student["features"]
            sizes = [tuple(f.shape[-2:]) for f in feats]
            masks = gt_masks(boxes, sizes, strides, finest_scale=finest_scale, mode=self.mask, fgfi_psi=self.fgfi_psi,
                             device=feats[0].device)
            adapted = [a(f) for a, f in zip(self.adapters, feats)]
            neck, l_obj, l_bg = neck_loss(adapted, teacher["features"], masks, self.alpha_obj, self.alpha_bg)
            total = total + neck
            out["kd_neck_obj"], out["kd_neck_bg"] = l_obj.detach(), l_bg.detach()
        if self.use_head:
            head, kl_pos, kl_neg = head_loss(dense_logits(student["cls_logits"]), dense_logits(teacher["cls_logits"]), labels,
                                             background, beta_obj=self.beta_obj, beta_bg=self.beta_bg, T_obj=self.T_obj, T_bg=self.T_bg)
            total = total + head
            out["kd_head_pos"], out["kd_head_neg"] = kl_pos.detach(), kl_neg.detach()
        out["kd_loss"] = total * float(weight)
        return out
