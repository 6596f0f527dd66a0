import pytest
import torch

from evaluators.data.transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    cifar_train_transform,
    pil_to_tensor,
)


def test_flip_is_a_mirror_and_p_controls_it():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    flipped = RandomHorizontalFlip(p=1.0)(x)
    assert torch.equal(flipped[..., 0], x[..., -1])
    assert torch.equal(flipped, x[..., torch.arange(3, -1, -1)])
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)
    torch.manual_seed(0)
    n_flipped = sum(not torch.equal(RandomHorizontalFlip(0.5)(x), x) for _ in range(400))
    assert 150 < n_flipped < 250


def test_random_crop_keeps_shape_and_is_a_window_of_the_padded_image():
    torch.manual_seed(1)
    x = torch.rand(3, 32, 32)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    seen = set()
    for _ in range(50):
        y = RandomCrop(32, padding=4)(x)
        assert y.shape == (3, 32, 32)
        hits = [(i, j) for i in range(9) for j in range(9) if torch.equal(padded[:, i : i + 32, j : j + 32], y)]
        assert hits, "crop is not a window of the zero-padded image"
        seen.add(hits[0])
    assert len(seen) > 10  # offsets really vary


def test_random_crop_reproducible_under_seed():
    x = torch.rand(3, 32, 32)
    tf = cifar_train_transform([0.5] * 3, [0.25] * 3)
    xu8 = (x * 255).to(torch.uint8)
    torch.manual_seed(7)
    a = [tf(xu8) for _ in range(5)]
    torch.manual_seed(7)
    b = [tf(xu8) for _ in range(5)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert a[0].shape == (3, 32, 32) and a[0].dtype == torch.float32


def test_normalize_and_center_crop():
    x = torch.rand(3, 6, 6)
    y = Normalize([0.1, 0.2, 0.3], [0.5, 1.0, 2.0])(x)
    assert torch.allclose(y[1], x[1] - 0.2)
    assert torch.allclose(y[2], (x[2] - 0.3) / 2.0)
    assert torch.equal(CenterCrop(2)(x), x[:, 2:4, 2:4])
    with pytest.raises(ValueError, match="channels"):
        Normalize([0.0], [1.0])(x)
    with pytest.raises(ValueError, match="std"):
        Normalize([0.0], [0.0])


def test_pil_stage_sizes():
    from PIL import Image
    import numpy as np

    img = Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8))
    assert Resize(10)(img).size == (20, 10)  # shorter side -> 10, aspect kept
    torch.manual_seed(0)
    for _ in range(5):
        assert RandomResizedCrop(16)(img).size == (16, 16)
    t = Compose([Resize(10), pil_to_tensor, CenterCrop(8)])(img)
    assert t.shape == (3, 8, 8)
    grey = pil_to_tensor(Image.fromarray(np.full((4, 5), 255, dtype=np.uint8)))
    assert grey.shape == (1, 4, 5) and torch.all(grey == 1.0)
