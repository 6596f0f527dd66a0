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


def hypervolume_contributions(points_min: np.ndarray) -> np.ndarray:
    """Exclusive hypervolume of each point of a mutually non-dominated set (reference: the
    worst value per objective padded by 10% of its range, so extreme points keep some volume)."""
    from search.pareto import hypervolume

    n, m = points_min.shape
    if n == 1:
        return np.full(1, np.inf)
    span = points_min.max(axis=0) - points_min.min(axis=0)
    ref = points_min.max(axis=0) + np.where(span > 0, 0.1 * span, 1.0)
    dirs = ["minimize"] * m
    total = hypervolume(points_min, dirs, ref)
    return np.array([total - hypervolume(np.delete(points_min, i, axis=0), dirs, ref) for i in range(n)])


def selection_order(values: np.ndarray, directions: Sequence[str], tie_break: str = "crowding") -> list[int]:
    """Indices from best to worst: non-dominated rank, then ``tie_break`` within a rank
    (``crowding`` distance as NSGA-II, or ``hypervolume`` contribution), then index (older first)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return []
    if tie_break not in ("crowding", "hypervolume"):
        raise ValueError(f"tie_break must be 'crowding' or 'hypervolume', got {tie_break!r}")
    pts = to_minimization(values, directions)
    ranks = nondominated_ranks(pts)
    score = np.zeros(len(values))
    for r in np.unique(ranks):
        idx = np.where(ranks == r)[0]
        score[idx] = crowding_distance(pts[idx]) if tie_break == "crowding" else hypervolume_contributions(pts[idx])
    return sorted(range(len(values)), key=lambda i: (ranks[i], -score[i], i))


def rank_for_selection(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]) -> list[int]:
    """Indices of ``trials`` from best to worst (rank, then crowding distance, then trial number)."""
    if not trials:
        return []
    by_number = sorted(range(len(trials)), key=lambda i: trials[i].number)
    order = selection_order(np.array([trials[i].values for i in by_number], dtype=float), directions)
    return [by_number[i] for i in order]


def pick_best(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str], primary: int | None = 0) -> optuna.trial.FrozenTrial:
    """The best trial: with ``primary`` set, the front member best on that objective; else the
    first by rank and crowding."""
    order = rank_for_selection(trials, directions)
    if primary is None:
        return trials[order[0]]
    pts = to_minimization(np.array([t.values for t in trials], dtype=float), directions)
    front = [i for i in order if nondominated_ranks(pts)[i] == 0]
    return trials[min(front, key=lambda i: (pts[i, primary], trials[i].number))]
