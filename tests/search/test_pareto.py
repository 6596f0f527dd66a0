import itertools

import numpy as np
import pytest

from search.pareto import default_reference_point, hypervolume, non_dominated_mask


def brute_front(values, directions):
    sign = np.array([-1 if d == "maximize" else 1 for d in directions])
    pts = values * sign
    return np.array([not any(np.all(q <= p) and np.any(q < p) for q in pts) for p in pts])


def monte_carlo_hv(pts, ref, n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    lo = pts.min(axis=0)
    box = rng.uniform(lo, ref, size=(n, pts.shape[1]))
    dom = np.zeros(n, dtype=bool)
    for p in pts:
        dom |= np.all(box >= p, axis=1)
    return dom.mean() * np.prod(np.asarray(ref) - lo)


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_brute_force_with_mixed_directions(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(40, 3)).astype(float)  # ties and duplicates on purpose
    dirs = ["maximize", "minimize", "minimize"]
    assert np.array_equal(non_dominated_mask(values, dirs), brute_front(values, dirs))


def test_hypervolume_2d_exact():
    v = np.array([[0.9, 3.0], [0.8, 1.0], [0.7, 2.0], [0.95, 5.0]])
    # maximise accuracy from 0, minimise energy below 6: 0.95*1 + 0.9*2 + 0.8*2 = 4.35
    assert hypervolume(v, ["maximize", "minimize"], [0.0, 6.0]) == pytest.approx(4.35)


@pytest.mark.parametrize("d", [3, 4])
def test_hypervolume_nd_agrees_with_monte_carlo(d):
    rng = np.random.default_rng(d)
    pts = rng.random((15, d))
    ref = [1.1] * d
    assert hypervolume(pts, ["minimize"] * d, ref) == pytest.approx(monte_carlo_hv(pts, ref), rel=0.02)


def test_hypervolume_ignores_points_beyond_reference_and_dominated_points():
    base = np.array([[1.0, 1.0]])
    more = np.array([[1.0, 1.0], [2.0, 2.0], [5.0, 0.5]])
    assert hypervolume(more, ["minimize", "minimize"], [3.0, 3.0]) == pytest.approx(hypervolume(base, ["minimize", "minimize"], [3.0, 3.0]))


def test_default_reference_point_is_worse_than_every_point():
    v = np.array([[0.9, 3.0], [0.5, 1.0]])
    ref = default_reference_point(v, ["maximize", "minimize"])
    assert ref[0] < 0.5 and ref[1] > 3.0
    for combo in itertools.product([0, 1], repeat=1):
        assert hypervolume(v[list(combo)], ["maximize", "minimize"], ref) > 0
