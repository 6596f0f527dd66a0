"""Splits: the test split ignores the search seed, validation follows it; fingerprints identify them."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators import get_datamodule
from evaluators.data.splits import carve_splits, fingerprint, split_identity


def test_carve_splits_disjoint_complete_and_test_fixed_by_its_own_seed():
    labels = np.repeat(np.arange(5), 40)
    tr0, va0, te0 = carve_splits(labels, 0.25, 0.2, seed=0)
    tr1, va1, te1 = carve_splits(labels, 0.25, 0.2, seed=1)
    for tr, va, te in ((tr0, va0, te0), (tr1, va1, te1)):
        assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(200))
        assert np.bincount(labels[te]).tolist() == [8] * 5 and np.bincount(labels[va]).tolist() == [8] * 5
    assert np.array_equal(te0, te1), "another search seed must not move the test split"
    assert not np.array_equal(va0, va1)
    _, _, te2 = carve_splits(labels, 0.25, 0.2, seed=0, test_seed=1)
    assert not np.array_equal(te0, te2)
    tr, va, te = carve_splits(labels, 0.25, 0.0, seed=0)
    assert len(te) == 0 and len(tr) + len(va) == 200
    with pytest.raises(ValueError, match="test_fraction"):
        carve_splits(labels, 0.25, 1.0, seed=0)


def test_fingerprint_is_order_independent_and_sensitive():
    assert fingerprint([3, 1, 2]) == fingerprint([1, 2, 3]) != fingerprint([1, 2, 4])


def test_digits_identity_follows_the_split_seed_not_the_batch_size():
    a = split_identity(get_datamodule("digits", seed=0, batch_size=8))
    b = split_identity(get_datamodule("digits", seed=0, batch_size=64))
    c = split_identity(get_datamodule("digits", seed=1))
    assert a == b and (a["val_size"], a["test_size"]) == (288, 360)
    assert c["val_sha256"] != a["val_sha256"] and c["test_sha256"] == a["test_sha256"]
    dm = get_datamodule("digits", seed=0, train_on_val=True)
    assert split_identity(dm) == a and len(dm.train_set) == 1149 + 288
