import numpy as np
import pytest
import torch

from evaluators import get_datamodule, list_datasets
from evaluators.data import DigitsDataModule


def test_registry_lists_and_errors():
    assert {"digits", "cifar10", "cifar100", "imagefolder"} <= set(list_datasets())
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        get_datamodule("digit")
    with pytest.raises(TypeError, match="unexpected option.*valfrac"):
        get_datamodule("digits", valfrac=0.1)
    with pytest.raises(TypeError, match="'cifar10' needs option.*root"):
        get_datamodule("cifar10")


def test_shapes_known_before_setup():
    dm = get_datamodule("digits")
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    assert dm.train_set is None  # nothing loaded yet


def test_split_is_stratified_disjoint_and_complete():
    dm = DigitsDataModule(val_fraction=0.2, seed=0)
    dm.setup()
    tr, va, te = dm.train_indices, dm.val_indices, dm.test_indices
    assert len(np.intersect1d(tr, va)) == 0 and len(np.intersect1d(tr, te)) == 0 and len(np.intersect1d(va, te)) == 0
    assert len(tr) + len(va) + len(te) == 1797 and (len(tr), len(va), len(te)) == (1149, 288, 360)
    y = np.concatenate([dm.train_set.labels.numpy(), dm.val_set.labels.numpy(), dm.test_set.labels.numpy()])
    y_val = dm.val_set.labels.numpy()
    overall = np.bincount(y, minlength=10) / len(y)
    val_share = np.bincount(y_val, minlength=10) / len(y_val)
    # stratified: every class's share in val matches its overall share to within one sample
    assert np.all(np.abs(val_share - overall) <= 1.0 / len(y_val) + 1e-9)


def test_split_deterministic_given_seed():
    a, b, c = DigitsDataModule(seed=3), DigitsDataModule(seed=3), DigitsDataModule(seed=4)
    for dm in (a, b, c):
        dm.setup()
    assert np.array_equal(a.val_indices, b.val_indices)
    assert torch.equal(a.val_set.images, b.val_set.images)
    assert not np.array_equal(a.val_indices, c.val_indices)


def test_images_standardised_with_train_stats():
    dm = DigitsDataModule()
    dm.setup()
    x = dm.train_set.images
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-2
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (64, 1, 8, 8) and yb.dtype == torch.long


def test_bad_val_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        DigitsDataModule(val_fraction=1.5)
