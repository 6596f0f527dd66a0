import numpy as np
import pytest
import torch

from evaluators import get_datamodule

from eval_helpers import write_png

COLOURS = {"blue": (0, 0, 255), "red": (255, 0, 0), "green": (0, 255, 0)}


def _tree(root, per_class=5, size=(12, 16)):
    for name, rgb in COLOURS.items():
        for i in range(per_class):
            arr = np.zeros((*size, 3), dtype=np.uint8)
            arr[...] = rgb
            arr[0, 0] = (i * 10, i * 10, i * 10)  # make files distinct
            write_png(root / name / f"img{i}.png", arr)


def test_classes_sorted_shapes_from_first_image(tmp_path):
    _tree(tmp_path)
    dm = get_datamodule("imagefolder", root=tmp_path, val_fraction=0.4, test_fraction=0.2)
    assert dm.classes == ["blue", "green", "red"]
    assert dm.num_classes == 3
    assert dm.input_shape == (3, 12, 12)  # shorter side of the first image
    dm.setup()
    # 3 test images (one per class), then 40 % of the remaining 12 for validation
    assert (len(dm.train_samples), len(dm.val_samples), len(dm.test_samples)) == (7, 5, 3)
    assert sorted(label for _, label in dm.test_samples) == [0, 1, 2]  # stratified
    parts = [{p for p, _ in s} for s in (dm.train_samples, dm.val_samples, dm.test_samples)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_eval_pixels_match_class_colour(tmp_path):
    _tree(tmp_path)
    dm = get_datamodule("imagefolder", root=tmp_path, image_size=8, augment=False, mean=[0, 0, 0], std=[1, 1, 1])
    dm.setup()
    for x, y in dm.val_set:
        assert x.shape == (3, 8, 8)
        colour = torch.tensor(COLOURS[dm.classes[int(y)]], dtype=torch.float32) / 255
        assert torch.allclose(x[:, 4, 4], colour, atol=1e-6)  # centre pixel is the class colour
    torch.manual_seed(0)
    xb, yb = next(iter(get_datamodule("imagefolder", root=tmp_path, image_size=8, batch_size=4).train_dataloader()))
    assert xb.shape == (4, 3, 8, 8) and yb.dtype == torch.long


def test_train_val_subfolders_and_greyscale(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        for cls in ("a", "b"):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", np.full((10, 10), 50 * i, dtype=np.uint8))
    dm = get_datamodule("imagefolder", root=tmp_path, image_size=10)
    assert dm.input_shape == (1, 10, 10) and dm.num_classes == 2
    dm.setup()
    assert len(dm.train_samples) == 6 and len(dm.val_samples) == 4 and len(dm.test_samples) == 2  # test/ is the test split
    assert all("val" in str(p) for p, _ in dm.val_samples) and all("test" in str(p) for p, _ in dm.test_samples)
    assert dm.split_keys()["test"] == ["test/a/0.png", "test/b/0.png"]
    x, _ = dm.val_set[0]
    assert x.shape == (1, 10, 10)


def test_bad_roots(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        get_datamodule("imagefolder", root=tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        get_datamodule("imagefolder", root=tmp_path)
