"""The one define-by-run adapter: a ``SearchSpace`` walked through an Optuna trial.

Conditions are honoured by walking dimensions in order and suggesting only the active ones, so
Optuna sees exactly the parameters the architecture has; ``fixed`` dimensions are not suggested.
Any architecture saved by a search replays with ``SearchSpace.validate`` alone (no Optuna).
"""

from __future__ import annotations

from typing import Any, Mapping

import optuna

from spaces import Arch, Categorical, FloatRange, IntRange, SearchSpace


def suggest_arch(trial: optuna.trial.BaseTrial, space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> Arch:
    fixed = dict(fixed or {})
    arch: Arch = {}
    for dim in space.dimensions:
        if not dim.active(arch):
            continue
        if dim.label in fixed:
            arch[dim.label] = fixed[dim.label]
        elif isinstance(dim, Categorical):
            arch[dim.label] = trial.suggest_categorical(dim.label, list(dim.choices))
        elif isinstance(dim, IntRange):
            arch[dim.label] = trial.suggest_int(dim.label, dim.low, dim.high, step=dim.step, log=dim.log)
        elif isinstance(dim, FloatRange):
            arch[dim.label] = trial.suggest_float(dim.label, dim.low, dim.high, log=dim.log)
        else:
            raise TypeError(f"dimension {dim.label!r}: no Optuna mapping for {type(dim).__name__}")
    return space.validate(arch)


def reachable(dim, fixed: Mapping[str, Any]) -> bool:
    """False when a condition names a fixed dimension whose fixed value switches ``dim`` off."""
    return all(c.label not in fixed or fixed[c.label] in c.values for c in dim.conditions)


def search_space_grid(space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> dict[str, list]:
    """Finite grids for ``GridSampler``: categorical choices and integer steps (floats not allowed)."""
    fixed = dict(fixed or {})
    grid: dict[str, list] = {}
    for dim in space.dimensions:
        if dim.label in fixed or not reachable(dim, fixed):
            continue
        if isinstance(dim, Categorical):
            grid[dim.label] = list(dim.choices)
        elif isinstance(dim, IntRange):
            grid[dim.label] = list(range(dim.low, dim.high + 1, dim.step))
        else:
            raise ValueError(f"strategy 'grid': dimension {dim.label!r} is a float range; fix it (config key 'fixed') or use another strategy")
    return grid
