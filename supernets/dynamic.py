"""The data-dependent-cost protocol shared by every dynamic network (ManiDP gates, FADN branches).

A dynamic module's work depends on its input, so its hardware cost is only known once it has been
*measured on data*. Modules take part by duck typing (the search never imports a technique):

* ``assume_cost(how)``: the module is data-dependent. Before training (a search's pre-screen, the
  ``abacus cost`` command) the caller asks it to assume a ratio (``"target"``: the technique's own
  target; a number: that fraction). A module that has a measurement keeps it. Assumed costs are
  flagged in their workloads (``active_ratio_source="assumed"``); a module that is neither measured
  nor assumed refuses to be costed (``UnmeasuredDynamicLayerError``): dynamic networks are never
  costed at full width silently.
* ``reset_cost_measurement()`` / ``set_cost_recording(on)``: the evaluator records the module's
  real behaviour during validation (``evaluators.callbacks.DataCostCallback``), so the cost the
  search keeps is the one measured on the validation images. The recorded statistics are buffers,
  so they travel with the weights (exported models are costed on their measurement too).
* ``cost_summary() -> dict[str, float]``: optional scalars the evaluator logs per epoch
  (``val_<key>``), e.g. the measured fraction of the dense MACs that ran.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["UnmeasuredDynamicLayerError", "data_dependent_modules", "has_data_dependent_cost", "assume_costs",
           "recording_modules", "conv_like_workload"]


class UnmeasuredDynamicLayerError(ValueError):
    """A dynamic layer was asked for its cost before its activity was measured on data."""


def data_dependent_modules(model: nn.Module) -> list[nn.Module]:
    """Modules of ``model`` whose cost depends on data (they define ``assume_cost``)."""
    return [m for m in model.modules() if callable(getattr(m, "assume_cost", None))]


def has_data_dependent_cost(model: nn.Module) -> bool:
    return bool(data_dependent_modules(model))


def assume_costs(model: nn.Module, how: str | float = "target") -> int:
    """Ask every data-dependent module without a measurement to assume its cost; returns how many
    modules are data-dependent (0: a static network, nothing to do)."""
    mods = data_dependent_modules(model)
    for m in mods:
        m.assume_cost(how)
    return len(mods)


def recording_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that record their activity during validation (``set_cost_recording``)."""
    return [m for m in model.modules()
            if callable(getattr(m, "set_cost_recording", None)) and callable(getattr(m, "reset_cost_measurement", None))]


def conv_like_workload(op: nn.Module, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Workload dicts of a conv-like op: its own ``hw_workload`` or, for ``nn.Conv2d``, the standard form."""
    if callable(getattr(op, "hw_workload", None)):
        wl = op.hw_workload(input_shape, output_shape)
        return [dict(wl)] if isinstance(wl, dict) else [dict(d) for d in wl]
    if isinstance(op, nn.Conv2d):
        from supernets.ops._quant_utils import conv_workload

        dw = op.groups > 1 and op.groups == op.in_channels == op.out_channels
        return [conv_workload("dwconv" if dw else "conv", input_shape, output_shape, in_channels=op.in_channels,
                              out_channels=op.out_channels, kernel=tuple(op.kernel_size), groups=op.groups,
                              w_bits=32, a_bits=32, bias=op.bias is not None)]
    raise TypeError(f"cannot describe the cost of {type(op).__name__}: it needs hw_workload() or to be an nn.Conv2d")
