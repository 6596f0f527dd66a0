"""Pareto fronts and hypervolume for any number of objectives with mixed directions.

The front is taken over arbitrary records (resumed studies, several experiments in ``abacus
compare``); points are first turned into minimisation (maximised objectives negated). The
hypervolume itself is moocore's (exact, any number of objectives).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return values * sign


def non_dominated_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """True for points no other point dominates (duplicates of a front point stay on the front)."""
    pts = to_minimization(values, directions)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        le = np.all(pts <= pts[i], axis=1)
        lt = np.any(pts < pts[i], axis=1)
        if np.any(le & lt):
            mask[i] = False
    return mask


def default_reference_point(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Worst observed value per objective, pushed 10% of its range (or 1) past it, in original units."""
    pts = to_minimization(values, directions)
    worst = pts.max(axis=0)
    span = pts.max(axis=0) - pts.min(axis=0)
    pad = np.where(span > 0, 0.1 * span, np.maximum(np.abs(worst) * 0.1, 1e-12))
    ref_min = worst + pad
    return to_minimization(ref_min[None, :], directions)[0]  # negation is its own inverse


def hypervolume(values: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by ``values`` and bounded by ``reference`` (both in original units).

    Computed by moocore (exact; dimension-sweep algorithms in 2-D/3-D, WFG-style above). Points
    not strictly better than the reference in every objective contribute nothing."""
    import moocore

    values = np.asarray(values, dtype=float).reshape(-1, len(directions))
    if len(values) == 0:
        return 0.0
    pts = to_minimization(values, directions)
    ref = to_minimization(np.asarray(reference, dtype=float)[None, :], directions)[0]
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref))
