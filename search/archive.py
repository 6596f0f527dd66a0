"""The Pareto front of a running search, kept up to date one completed trial at a time.

Why our own (and not moocore / Optuna): both offer batch filters (``moocore.is_nondominated``,
Optuna's ``_get_pareto_front_trials``) that look at every point again; called after every trial
they made the engine's bookkeeping O(n) per trial and O(n^2) per search (142 ms per call at
1,000 trials, seconds at 10,000). Neither offers an incremental archive. Keeping the front
incrementally needs only "does the new point dominate / is it dominated by the current front",
one vectorised comparison of the new point with the front: O(front) per trial. The volumes
themselves still come from moocore (``search.pareto.hypervolume``).

The archive also keeps the log of its changes (which trial entered, which ones it pushed out),
so the hypervolume curve of the whole search is replayed at the end from those events, with a
hypervolume computed only where the front changed, instead of recomputing every prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable, Sequence

import numpy as np

from search.pareto import hypervolume


@dataclass(frozen=True)
class FrontChange:
    """What one ``add`` did to the front: ``entered`` is False for a dominated point."""

    key: Hashable
    entered: bool
    evicted: tuple = ()


@dataclass
class ParetoArchive:
    """Mutually non-dominated points (duplicates of a front point are kept, as in
    ``search.pareto.non_dominated_mask``) keyed by trial number, in minimisation form."""

    directions: Sequence[str]
    keys: list = field(default_factory=list, init=False)
    comparisons: int = field(default=0, init=False)  # front points the new points were compared with, in total (complexity checks)
    changes: list[FrontChange] = field(default_factory=list, init=False)  # only the adds that entered the front
    max_size: int = field(default=0, init=False)  # the largest the front has been

    def __post_init__(self) -> None:
        self._sign = np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])
        self._pts = np.empty((0, len(self.directions)))
        self._members: set = set(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._members

    def add(self, key: Hashable, values: Sequence[float]) -> FrontChange:
        """Compare the new point with the current front only: O(front)."""
        p = np.asarray(values, dtype=float) * self._sign
        front = self._pts
        self.comparisons += len(front)
        if len(front):
            if np.any(np.all(front <= p, axis=1) & np.any(front < p, axis=1)):
                return FrontChange(key, False)
            out = np.all(front >= p, axis=1) & np.any(front > p, axis=1)
        else:
            out = np.zeros(0, dtype=bool)
        evicted = tuple(k for k, o in zip(self.keys, out) if o)
        keep = ~out
        self._pts = np.vstack([front[keep], p[None, :]])
        self.keys = [k for k, kp in zip(self.keys, keep) if kp] + [key]
        self._members.difference_update(evicted)
        self._members.add(key)
        self.max_size = max(self.max_size, len(self.keys))
        change = FrontChange(key, True, evicted)
        self.changes.append(change)
        return change

    def values(self) -> np.ndarray:
        """The front in original units (rows in the order of ``keys``)."""
        return self._pts * self._sign

    def hypervolume(self, reference: Sequence[float]) -> float:
        return hypervolume(self.values(), self.directions, reference)


def hypervolume_curve(steps: Iterable[Hashable], changes: Sequence[FrontChange], values: dict,
                      directions: Sequence[str], reference: Sequence[float]) -> list[tuple[Hashable, float]]:
    """The hypervolume after each step (trial number, in order), on one reference point,
    replayed from an archive's change log: moocore is called once per front change, not per step.
    ``values`` maps a key to its objective values (original units)."""
    by_key = {c.key: c for c in changes}
    front: dict = {}
    hv, curve = 0.0, []
    for step in steps:
        change = by_key.get(step)
        if change is not None:
            for k in change.evicted:
                front.pop(k, None)
            front[change.key] = values[change.key]
            hv = hypervolume(np.array(list(front.values()), dtype=float), directions, reference)
        curve.append((step, hv))
    return curve
