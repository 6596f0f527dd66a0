"""Pareto fronts and hypervolume for any number of objectives with mixed directions.

The arithmetic is moocore's (C implementations of the non-dominated filter and of the exact
hypervolume, WFG-style in any dimension); this module only fixes the conventions the search
uses everywhere: values in original units with a direction per objective, duplicates of a front
point stay on the front, and points that do not strictly dominate the reference point add no
volume. Incremental front upkeep during a search lives in ``search.archive``.
"""

from __future__ import annotations

from typing import Sequence

import moocore
import numpy as np


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return values * sign


def non_dominated_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """True for points no other point dominates (duplicates of a front point stay on the front)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(directions))
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(to_minimization(values, directions), keep_weakly=True), dtype=bool)


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
