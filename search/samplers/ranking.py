"""Ordering complete trials for selection, for one or several objectives.

Several objectives are ordered by non-dominated rank, then by crowding distance (NSGA-II's
tie-break: spread along the front is preferred), so "best" has one meaning in every strategy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import optuna

from search.pareto import to_minimization


def nondominated_ranks(points_min: np.ndarray) -> np.ndarray:
    """Rank 0 for the front, 1 for the front after removing it, ... (points already minimised)."""
    n = len(points_min)
    ranks = np.full(n, -1)
    remaining = np.arange(n)
    r = 0
    while len(remaining):
        pts = points_min[remaining]
        dominated = np.array([np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)) for p in pts])
        ranks[remaining[~dominated]] = r
        remaining = remaining[dominated]
        r += 1
    return ranks


def crowding_distance(points_min: np.ndarray) -> np.ndarray:
    n, m = points_min.shape
    if n <= 2:
        return np.full(n, np.inf)
    dist = np.zeros(n)
    for j in range(m):
        order = np.argsort(points_min[:, j])
        lo, hi = points_min[order[0], j], points_min[order[-1], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi > lo:
            dist[order[1:-1]] += (points_min[order[2:], j] - points_min[order[:-2], j]) / (hi - lo)
    return dist


def rank_for_selection(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]) -> list[int]:
    """Indices of ``trials`` from best to worst (rank, then crowding distance, then trial number)."""
    if not trials:
        return []
    pts = to_minimization(np.array([t.values for t in trials], dtype=float), directions)
    ranks = nondominated_ranks(pts)
    crowd = np.zeros(len(trials))
    for r in np.unique(ranks):
        idx = np.where(ranks == r)[0]
        crowd[idx] = crowding_distance(pts[idx])
    return sorted(range(len(trials)), key=lambda i: (ranks[i], -crowd[i], trials[i].number))


def pick_best(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str], primary: int | None = 0) -> optuna.trial.FrozenTrial:
    """The best trial: with ``primary`` set, the front member best on that objective; else the
    first by rank and crowding."""
    order = rank_for_selection(trials, directions)
    if primary is None:
        return trials[order[0]]
    pts = to_minimization(np.array([t.values for t in trials], dtype=float), directions)
    front = [i for i in order if nondominated_ranks(pts)[i] == 0]
    return trials[min(front, key=lambda i: (pts[i, primary], trials[i].number))]
