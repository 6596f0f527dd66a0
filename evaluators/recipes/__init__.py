"""Technique training recipes as Lightning callbacks (duck-typed over the modules they act on).

* ``vtp``: Vision Transformer Pruning -- L1 on gate scores, global threshold, physical pruning,
  fine-tuning (``VTPCallback``).
* ``manidp``: ManiDP dynamic pruning -- labels for the complexity-aware sparsity loss, per-epoch
  remain-rate thresholds, active-ratio measurement on validation data (``ManiDPCallback``,
  ``measure_active_ratios``).

``recipe_callbacks(model)`` returns the callbacks a built model needs.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import Callback
from torch import nn

from .manidp import ManiDPCallback, ManiDPLoss, find_regularizer, measure_active_ratios
from .vtp import VTPCallback, find_vtp_config, prune_model

__all__ = ["VTPCallback", "prune_model", "find_vtp_config", "ManiDPCallback", "ManiDPLoss", "measure_active_ratios",
           "find_regularizer", "recipe_callbacks"]


def recipe_callbacks(model: nn.Module) -> list[Callback]:
    """The VTP / ManiDP callbacks ``model`` needs, judged by what its builder attached to it."""
    out: list[Callback] = []
    if find_vtp_config(model) is not None:
        out.append(VTPCallback())
    if find_regularizer(model) is not None:
        out.append(ManiDPCallback())
    return out
