"""Pareto fronts and hypervolume for any number of objectives with mixed directions.

Why our own: Optuna exposes ``study.best_trials`` but its hypervolume routine is private, and
the search needs the front over arbitrary records (resumed studies, several experiments in
``abacus compare``) on one shared reference point. Points are first turned into minimisation
(maximised objectives negated); the hypervolume is exact: a sweep in 2-D and recursive slicing
(HSO) above, which is fast for the front sizes a search produces (tens to hundreds of points).
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
    """Volume dominated by ``values`` and bounded by ``reference`` (both in original units)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(directions))
    if len(values) == 0:
        return 0.0
    pts = to_minimization(values, directions)
    ref = to_minimization(np.asarray(reference, dtype=float)[None, :], directions)[0]
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[non_dominated_mask(pts, ["minimize"] * pts.shape[1])]
    return float(_hv(np.unique(pts, axis=0), ref))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    d = pts.shape[1]
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        order = np.argsort(pts[:, 0])
        total, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return total
    # Slice along the last objective: between consecutive levels the dominated set is the
    # (d-1)-dimensional hypervolume of the points at or below that level.
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    levels = list(pts[:, -1]) + [ref[-1]]
    total = 0.0
    for i in range(len(pts)):
        height = levels[i + 1] - levels[i]
        if height <= 0:
            continue
        sub = pts[: i + 1, :-1]
        sub = sub[non_dominated_mask(sub, ["minimize"] * sub.shape[1])]
        total += height * _hv(sub, ref[:-1])
    return total
