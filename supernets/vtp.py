"""Vision Transformer Pruning (VTP; Zhu, Tang, Han, arXiv 2104.08500): gates, thresholds, slimming.

Pipeline: (1) train with learnable per-dimension scores ``a`` (a ``ChannelGate``, initialised to 1,
the feature becomes ``X diag(a)``) under an L1 penalty ``lambda * sum |a|``; (2) pick a threshold
on ``|a|`` and *physically* remove the dimensions below it, folding the kept scores into the
adjacent weights; (3) fine-tune the slim model. Steps (1) and (3) are training recipes
(``evaluators.recipes.vtp``); this module owns the gate and the structural surgery.

Gate placement (spec: unofficial ``Cydia2018/ViT-cifar10-pruning``; the paper's exact placement is
unverified): one gate shared by the outputs of Q, K and V of each attention (prunes rows of W_q,
W_k, W_v and columns of W_o) and one gate on the MLP hidden features after the activation (prunes
rows of fc1 and columns of fc2). The residual width is never pruned.

Duck-typed contract, so any transformer layer can opt in: a *gated layer* is a module with an
attribute ``gate`` holding a ``ChannelGate`` and a method ``pruned(keep: LongTensor) -> nn.Module``
returning the slim layer with the kept gate values folded in; attention layers also define
``head_groups() -> list[LongTensor]`` (the gate indices of each head) for head rounding.

Decisions where the sources are silent or quirky (documented, configurable):

* the threshold prunes exactly ``floor(rate * total)`` dimensions with the smallest ``|a|`` (ties by
  index); the unofficial code keeps ``|a| > sorted(|a|)[floor(rate * total)]``, which also prunes
  the minimum when ``rate == 0``;
* every gated layer keeps at least ``min_keep`` dimensions (default 1), so no layer vanishes;
* head rounding: ``"multiple"`` (unofficial: lower the layer's threshold until the kept count is a
  multiple of the head count), ``"uniform"`` (every head keeps the same number of its own best
  dimensions: uniform heads, the hardware-friendly form) or ``"none"``. Heads may end up with
  different widths in ``"multiple"``/``"none"``; the slim attention handles per-head widths exactly
  and keeps the original softmax scale, so the slim model equals the gated one with the pruned
  gates zeroed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "ChannelGate", "VTPConfig", "PLACEMENTS", "SCOPES", "HEAD_ROUNDING", "L1_MODES",
    "gated_layers", "gates", "gate_l1", "add_l1_subgradient", "prune_plan", "zero_pruned_gates",
    "apply_prune_plan", "block_index", "kept_counts", "total_kept_fraction", "iter_scores",
]

PLACEMENTS = ("qkv_out+mlp_hidden", "qkv_out_only", "mlp_hidden_only")
SCOPES = ("global", "per_layer", "per_block")
HEAD_ROUNDING = ("multiple", "uniform", "none")
L1_MODES = ("subgradient", "loss")


class ChannelGate(nn.Module):
    """Learnable per-dimension score ``a`` (init 1) applied along the last axis: ``x * a``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.score = nn.Parameter(torch.ones(dim))

    @property
    def dim(self) -> int:
        return self.score.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.score

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        n = math.prod(int(v) for v in output_shape)
        return {"op": "eltwise", "ops": n, "w_bits": 32, "a_bits": 32, "params": self.dim, "in_elems": n, "out_elems": n}

    def no_weight_decay(self) -> set[str]:
        """Gate scores are driven by the L1 sparsity term alone (weight decay would prune them too)."""
        return {"score"}

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


@dataclass
class VTPConfig:
    """The VTP recipe of a built model (stored as ``model.vtp_config`` by the builder).

    ``block_keep`` maps a block index to its keep ratio (used when ``scope == "per_block"``).
    ``sparse_fraction`` is the share of the training epochs spent in sparsity training before
    the prune step; the rest fine-tunes the slim model.
    """

    lam: float = 1e-4
    prune_rate: float = 0.3
    placement: str = "qkv_out+mlp_hidden"
    scope: str = "global"
    head_rounding: str = "multiple"
    l1_mode: str = "subgradient"
    sparse_fraction: float = 0.5
    block_keep: dict[int, float] = field(default_factory=dict)
    min_keep: int = 1

    def __post_init__(self) -> None:
        for name, value, allowed in (("placement", self.placement, PLACEMENTS), ("scope", self.scope, SCOPES),
                                     ("head_rounding", self.head_rounding, HEAD_ROUNDING), ("l1_mode", self.l1_mode, L1_MODES)):
            if value not in allowed:
                raise ValueError(f"vtp {name}: expected one of {list(allowed)}, found {value!r}")
        if not 0.0 <= float(self.prune_rate) < 1.0:
            raise ValueError(f"vtp prune_rate: expected a number in [0, 1), found {self.prune_rate!r}")
        if not float(self.lam) >= 0.0:
            raise ValueError(f"vtp lambda: expected a number >= 0, found {self.lam!r}")
        if not 0.0 < float(self.sparse_fraction) <= 1.0:
            raise ValueError(f"vtp sparse_fraction: expected a number in (0, 1], found {self.sparse_fraction!r}")
        for b, r in self.block_keep.items():
            if not 0.0 < float(r) <= 1.0:
                raise ValueError(f"vtp block {b} keep ratio: expected a number in (0, 1], found {r!r}")

    @property
    def gate_attention(self) -> bool:
        return self.placement in ("qkv_out+mlp_hidden", "qkv_out_only")

    @property
    def gate_mlp(self) -> bool:
        return self.placement in ("qkv_out+mlp_hidden", "mlp_hidden_only")


# ---------------------------------------------------------------------------------------------
# finding gates, the L1 term
# ---------------------------------------------------------------------------------------------

def gated_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every layer that carries a ``ChannelGate`` and can be pruned."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "gate", None), ChannelGate) and callable(getattr(m, "pruned", None))]


def gates(model: nn.Module) -> list[ChannelGate]:
    return [m for m in model.modules() if isinstance(m, ChannelGate)]


def gate_l1(model: nn.Module) -> torch.Tensor:
    """``sum_gates ||a||_1`` (a differentiable scalar; 0 when the model has no gates)."""
    gs = gates(model)
    if not gs:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return torch.stack([g.score.abs().sum() for g in gs]).sum()


@torch.no_grad()
def add_l1_subgradient(model: nn.Module, lam: float) -> None:
    """Add ``lam * sign(a)`` to every gate's gradient (the unofficial code's L1 step, applied after
    ``backward()`` and before ``optimizer.step()``; equal to an L1 loss term for plain SGD)."""
    for g in gates(model):
        if g.score.grad is None:
            g.score.grad = torch.zeros_like(g.score)
        g.score.grad.add_(torch.sign(g.score), alpha=float(lam))


# ---------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def block_index(name: str) -> int | None:
    """Index of the block a layer belongs to: the first numeric component of its name
    (``blocks.3.attn_out`` -> 3), or None."""
    m = _BLOCK_RE.search(name)
    return int(m.group(1)) if m else None


def _lowest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` smallest values (stable: ties broken by index)."""
    order = torch.sort(scores, stable=True).indices
    return order[:n]


def _round_heads(layer: nn.Module, score: torch.Tensor, keep_mask: torch.Tensor, mode: str) -> torch.Tensor:
    groups: Sequence[torch.Tensor] | None = layer.head_groups() if callable(getattr(layer, "head_groups", None)) else None
    if not groups or mode == "none":
        return keep_mask
    h = len(groups)
    k = int(keep_mask.sum())
    if mode == "multiple":
        target = min(score.numel(), int(math.ceil(k / h)) * h)
        if target == k:
            return keep_mask
        order = torch.sort(score, descending=True, stable=True).indices
        out = torch.zeros_like(keep_mask)
        out[order[:target]] = True
        return out
    per_head = int(math.ceil(k / h))  # uniform
    out = torch.zeros_like(keep_mask)
    for idx in groups:
        idx = idx.to(score.device)
        top = torch.sort(score[idx], descending=True, stable=True).indices[: min(per_head, idx.numel())]
        out[idx[top]] = True
    return out


@torch.no_grad()
def prune_plan(
    model: nn.Module,
    prune_rate: float,
    scope: str = "global",
    head_rounding: str = "multiple",
    block_keep: Mapping[int, float] | None = None,
    min_keep: int = 1,
) -> dict[str, torch.Tensor]:
    """Which dimensions each gated layer keeps: ``{layer name: sorted LongTensor of kept indices}``.

    ``scope="global"``: rank ``|a|`` of all gates together and prune the ``floor(rate * total)``
    smallest (the paper's global pruning rate); ``"per_layer"``: the same rate inside each layer;
    ``"per_block"``: inside each block, pruning ``1 - block_keep[block]`` of its dimensions (blocks
    missing from ``block_keep`` use ``1 - prune_rate``). Head rounding and ``min_keep`` then apply
    per layer.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {list(SCOPES)}, found {scope!r}")
    if head_rounding not in HEAD_ROUNDING:
        raise ValueError(f"head_rounding: expected one of {list(HEAD_ROUNDING)}, found {head_rounding!r}")
    if not 0.0 <= float(prune_rate) < 1.0:
        raise ValueError(f"prune_rate: expected a number in [0, 1), found {prune_rate!r}")
    layers = gated_layers(model)
    if not layers:
        raise ValueError("model has no VTP gates (build it with vtp.enabled=True); nothing to prune")
    scores = {n: m.gate.score.detach().abs().float().cpu() for n, m in layers}
    keep: dict[str, torch.Tensor] = {n: torch.ones(s.numel(), dtype=torch.bool) for n, s in scores.items()}

    def prune_group(names: list[str], rate: float) -> None:
        flat = torch.cat([scores[n] for n in names])
        n_prune = int(math.floor(rate * flat.numel() + 1e-9))
        if n_prune <= 0:
            return
        low = _lowest(flat, n_prune)
        mask = torch.ones(flat.numel(), dtype=torch.bool)
        mask[low] = False
        start = 0
        for n in names:
            d = scores[n].numel()
            keep[n] = mask[start : start + d].clone()
            start += d

    names = [n for n, _ in layers]
    if scope == "global":
        prune_group(names, float(prune_rate))
    elif scope == "per_layer":
        for n in names:
            prune_group([n], float(prune_rate))
    else:
        by_block: dict[int | None, list[str]] = {}
        for n in names:
            by_block.setdefault(block_index(n), []).append(n)
        bk = dict(block_keep or {})
        for b, group in by_block.items():
            ratio = bk.get(b, 1.0 - float(prune_rate)) if b is not None else 1.0 - float(prune_rate)
            if not 0.0 < float(ratio) <= 1.0:
                raise ValueError(f"block_keep[{b}]: expected a keep ratio in (0, 1], found {ratio!r}")
            prune_group(group, 1.0 - float(ratio))

    plan: dict[str, torch.Tensor] = {}
    for n, m in layers:
        mask = _round_heads(m, scores[n], keep[n], head_rounding)
        if int(mask.sum()) < min_keep:
            top = torch.sort(scores[n], descending=True, stable=True).indices[: min(min_keep, mask.numel())]
            mask = mask.clone()
            mask[top] = True
        plan[n] = torch.nonzero(mask).flatten()
    return plan


@torch.no_grad()
def zero_pruned_gates(model: nn.Module, plan: Mapping[str, torch.Tensor]) -> nn.Module:
    """Set the scores of the dimensions ``plan`` prunes to 0, in place (the "gated" reference model)."""
    layers = dict(gated_layers(model))
    for name, kept in plan.items():
        if name not in layers:
            raise KeyError(f"plan names layer {name!r}, which is not a gated layer of the model")
        score = layers[name].gate.score
        mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
        mask[kept.to(score.device)] = True
        score.masked_fill_(~mask, 0.0)
    return model


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@torch.no_grad()
def apply_prune_plan(model: nn.Module, plan: Mapping[str, torch.Tensor]) -> nn.Module:
    """Physically prune, in place: every gated layer named in ``plan`` is replaced by its slim
    version (``layer.pruned(kept)``; the kept scores are folded into the weights, the gate is gone).
    Returns ``model``; its parameter objects change, so optimisers must be rebuilt."""
    layers = dict(gated_layers(model))
    for name, kept in plan.items():
        if name not in layers:
            raise KeyError(f"plan names layer {name!r}, which is not a gated layer of the model")
        layer = layers[name]
        slim = layer.pruned(kept.to(layer.gate.score.device).long())
        slim.train(layer.training)
        _set_submodule(model, name, slim)
    for m in model.modules():  # the root and whichever submodule carries the recipe stop their L1 term
        if m is model or getattr(m, "vtp_config", None) is not None:
            m.vtp_pruned = True
    return model


def kept_counts(plan: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {n: int(k.numel()) for n, k in plan.items()}


def total_kept_fraction(model: nn.Module, plan: Mapping[str, torch.Tensor]) -> float:
    layers = dict(gated_layers(model))
    total = sum(layers[n].gate.dim for n in plan)
    return sum(int(k.numel()) for k in plan.values()) / max(total, 1)


def iter_scores(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    for n, m in gated_layers(model):
        yield n, m.gate.score.detach()
