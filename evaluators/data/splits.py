"""Train / validation / test splits and their identity.

Why a module of its own: a search is only fair if every trial (and every retrain, and a resumed
run) scores on the *same* validation images, and its final claims are only honest if they are
measured on images the search never saw. The data modules carve their splits with
:func:`carve_splits` and describe them with :func:`split_identity`, so the engine can record the
split on the search's parent run, check it on resume, and each worker can check it saw that split.

Two seeds, on purpose:

* ``test_seed`` (default 0) fixes the held-out test split of a data set that has no test set of
  its own. It does not follow the search seed, so searches with different seeds are measured on
  the same test images.
* ``seed`` (the *split* seed, the search's seed) fixes the train/validation split of the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a stratified split: each class keeps its share in both parts.

    Deterministic given ``seed`` (scikit-learn's ``train_test_split`` with ``stratify``).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    n_classes = len(np.unique(labels))
    n_val = int(np.ceil(val_fraction * len(labels)))
    if n_val < n_classes or len(labels) - n_val < n_classes:
        raise ValueError(
            f"val_fraction={val_fraction} leaves {n_val} validation / {len(labels) - n_val} training "
            f"samples, fewer than the {n_classes} classes a stratified split needs"
        )
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(val_idx)


def carve_splits(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                 test_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test) into ``labels``: stratified, disjoint, covering every sample.

    ``test_fraction`` of all samples is held out first (fixed by ``test_seed``; 0 gives an empty
    test split), then ``val_fraction`` of the *rest* becomes validation (fixed by ``seed``).
    """
    labels = np.asarray(labels)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rest = np.arange(len(labels))
    test = np.zeros(0, dtype=rest.dtype)
    if test_fraction > 0:
        rest, test = stratified_split(labels, test_fraction, test_seed)
    tr, va = stratified_split(labels[rest], val_fraction, seed)
    return rest[tr], rest[va], test


def fingerprint(keys: Iterable[Any]) -> str:
    """A short, order-independent SHA-256 of a split's members (indices or relative file paths)."""
    h = hashlib.sha256()
    for k in sorted(str(k) for k in keys):
        h.update(k.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def split_identity(datamodule: Any) -> dict[str, Any]:
    """``{"split_seed", "val_size", "val_sha256", "test_size", "test_sha256"}`` of a data module.

    Needs the module's ``split_keys()`` (a mapping ``"val"``/``"test"`` -> the members' keys); sets
    the module up if it is not yet.
    """
    return identity_of(int(datamodule.seed), datamodule.split_keys())


def identity_of(seed: int, keys: dict[str, Any]) -> dict[str, Any]:
    """The split identity from the split seed and the ``"val"``/``"test"`` members (what
    :func:`split_identity` reads from a set-up data module, or a torch-free probe computes)."""
    out: dict[str, Any] = {"split_seed": int(seed)}
    for part in ("val", "test"):
        members = list(keys.get(part) or [])
        out[f"{part}_size"] = len(members)
        out[f"{part}_sha256"] = fingerprint(members) if members else ""
    return out
