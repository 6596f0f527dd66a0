import pickle

import numpy as np
import pytest
import torch

from evaluators import get_datamodule
from evaluators.data.cifar import channel_stats, load_batch

from eval_helpers import random_cifar_images, write_cifar_batch


@pytest.fixture()
def cifar10_dir(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        write_cifar_batch(root / f"data_batch_{i}", random_cifar_images(8, i), [(i + k) % 10 for k in range(8)])
    write_cifar_batch(root / "test_batch", random_cifar_images(6, 99), [0, 1, 2, 3, 4, 5])
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=2)
    return tmp_path


def test_cifar10_layout_pixels_and_labels(cifar10_dir):
    # parent dir is accepted; val_fraction=None validates on the test batch (legacy opt-in, then no test split)
    dm = get_datamodule("cifar10", root=cifar10_dir, augment=False, val_fraction=None)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10
    dm.setup()
    assert len(dm.train_set) == 40 and len(dm.val_set) == 6 and dm.test_set is None
    raw = load_batch(dm.root / "data_batch_2")
    row = np.asarray(raw["data"][3])
    img = dm.train_set.images[8 + 3]  # batches are concatenated in order 1..5
    # official layout: 1024 red values row-major, then green, then blue
    assert int(img[0, 0, 5]) == row[5]
    assert int(img[1, 2, 7]) == row[1024 + 2 * 32 + 7]
    assert int(img[2, 31, 31]) == row[3071]
    assert int(dm.train_set.labels[8 + 3]) == raw["labels"][3]
    # normalisation uses the training channel statistics
    mean, std = channel_stats(dm.train_set.images.numpy())
    x, _ = dm.val_set[0]
    expect = (dm.val_set.images[0].float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(x, expect.float(), atol=1e-5)


def test_cifar10_augmented_batches(cifar10_dir):
    dm = get_datamodule("cifar10", root=cifar10_dir / "cifar-10-batches-py", batch_size=16, val_fraction=0.25)
    torch.manual_seed(0)
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.long
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape == (10, 3, 32, 32)
    xt, _ = next(iter(dm.test_dataloader()))  # the test batch is the held-out test split
    assert xt.shape == (6, 3, 32, 32)


def test_cifar10_val_fraction_holds_out_training_images(cifar10_dir):
    dm = get_datamodule("cifar10", root=cifar10_dir, val_fraction=0.25, augment=False)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 40 and len(dm.val_set) == 10 and len(dm.test_set) == 6
    merged = get_datamodule("cifar10", root=cifar10_dir, val_fraction=0.25, augment=False, train_on_val=True)
    merged.setup()
    assert len(merged.train_set) == 40 and len(merged.val_set) == 10 and len(merged.test_set) == 6
    assert merged.split_keys()["val"] == dm.split_keys()["val"]


def test_cifar100_train_test_layout(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    fine = [0, 57, 99, 12]
    write_cifar_batch(root / "train", random_cifar_images(4, 0), fine, label_key=b"fine_labels", extra={b"coarse_labels": [0, 1, 19, 3]})
    write_cifar_batch(root / "test", random_cifar_images(2, 1), [99, 1], label_key=b"fine_labels", extra={b"coarse_labels": [4, 5]})
    dm = get_datamodule("cifar100", root=root, augment=False, val_fraction=None)
    assert dm.num_classes == 100
    dm.setup()
    assert dm.train_set.labels.tolist() == fine
    coarse = get_datamodule("cifar100", root=tmp_path, label_mode="coarse", val_fraction=None)
    coarse.setup()
    assert coarse.num_classes == 20 and coarse.train_set.labels.tolist() == [0, 1, 19, 3]


def test_missing_directory_is_one_clear_line(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError) as err:
        get_datamodule("cifar10", root=missing)
    msg = str(err.value)
    assert str(missing) in msg and "data_batch_1..5" in msg and "\n" not in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="lacks the batch files"):
        get_datamodule("cifar10", root=tmp_path / "empty")


def test_refuses_pickles_that_run_code(tmp_path):
    root = tmp_path / "evil"
    root.mkdir()

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in ("train", "test"):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": Boom(), b"fine_labels": [0]}, f, protocol=2)
    dm = get_datamodule("cifar100", root=root)
    with pytest.raises(pickle.UnpicklingError, match=r"print, which a CIFAR batch never needs"):
        dm.setup()
