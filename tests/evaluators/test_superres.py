"""The SR evaluator (PSNR/SSIM on Y against hand-computed values) and the SR data loaders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import evaluators
import spaces
import supernets
from evaluators.data.superres import bicubic_downsample, split_by_image
from evaluators.image2image import SuperResolutionModule
from evaluators.metrics import rgb_to_y


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _scores(pred: torch.Tensor, target: torch.Tensor, scale: int = 2, **kw) -> dict[str, float]:
    module = SuperResolutionModule(torch.nn.Identity(), scale=scale, **kw)
    p, t = module.prepare(pred, target)
    out = {}
    for name, metric in module.val_metrics.items():
        metric.update(p, t)
        out[name] = float(metric.compute())
    return out


def test_y_channel_is_bt601_studio_range():
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255))


def test_psnr_and_ssim_of_constant_images_by_hand():
    a, b = 100 / 255, 120 / 255                   # grey levels: on the 8-bit grid, quantisation changes nothing
    pred = torch.full((2, 3, 20, 20), a, dtype=torch.float64)  # float64: SSIM's variances are exactly 0
    target = torch.full((2, 3, 20, 20), b, dtype=torch.float64)
    ya, yb = (16 + 219 * a) / 255, (16 + 219 * b) / 255   # 65.481 + 128.553 + 24.966 = 219
    got = _scores(pred, target)
    assert got["psnr"] == pytest.approx(10 * math.log10(1.0 / (ya - yb) ** 2), abs=1e-3)
    c1 = (0.01 * 1.0) ** 2                          # constant images: only the luminance term of SSIM is left
    assert got["ssim"] == pytest.approx((2 * ya * yb + c1) / (ya ** 2 + yb ** 2 + c1), abs=1e-5)


def test_psnr_is_the_mean_over_images_of_the_border_cropped_y_psnr():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 3, 24, 24, generator=g) * 255).round() / 255
    pred = (target + 0.05 * torch.randn(3, 3, 24, 24, generator=g)).clamp(0, 1)
    got = _scores(pred, target, scale=3)
    p8 = (pred * 255).round() / 255
    y = lambda x: (16 + 65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]).numpy() / 255  # noqa: E731
    d = (y(p8) - y(target))[:, 3:-3, 3:-3]
    per_image = [10 * np.log10(1.0 / np.mean(d[i] ** 2)) for i in range(3)]
    assert got["psnr"] == pytest.approx(float(np.mean(per_image)), abs=1e-3)


def _png(path, h, w, seed=0, grey=False):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def test_div2k_layout_loads_pairs_and_prefers_official_lr(tmp_path):
    root = tmp_path / "DIV2K"
    for i in range(3):
        _png(root / "DIV2K_train_HR" / f"{i + 1:04d}.png", 41, 50, i)
    for i in range(2):
        _png(root / "DIV2K_valid_HR" / f"{i + 801:04d}.png", 40, 48, 10 + i)
    official = _png(root / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png", 20, 24, 99)
    dm = evaluators.get_datamodule("div2k", root=str(root), scale=2, patch_size=8, patches_per_epoch=5, batch_size=2)
    assert dm.task == "superres" and dm.builder_kwargs()["scale"] == 2
    dm.setup()
    lr, hr = dm.train_set[0]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16) and len(dm.train_set) == 5
    assert dm.val_names == ["0801.png", "0802.png"] and len(dm.val_set) == 2
    lr_v, hr_v = dm.val_set[0]                        # whole images (benchmark protocol)
    assert hr_v.shape == (3, 40, 48) and lr_v.shape == (3, 20, 24)
    assert torch.equal((lr_v * 255).round().to(torch.uint8), torch.from_numpy(official).permute(2, 0, 1))
    lr_made, hr_made = dm.val_set[1]                   # no official LR for 0802: bicubic made here
    assert torch.equal((lr_made * 255).round().to(torch.uint8), bicubic_downsample((hr_made * 255).round().to(torch.uint8), 2))
    assert next(iter(dm.val_dataloader()))[0].shape[0] == 1


@pytest.mark.parametrize("layout", ["flat", "hr_subfolder", "huang"])
def test_benchmark_folders_load_every_layout(tmp_path, layout):
    root = tmp_path / "Set5"
    names = ["baby", "bird", "butterfly", "head", "woman"]
    for i, n in enumerate(names):
        if layout == "flat":
            _png(root / f"{n}.png", 30, 34, i)
        elif layout == "hr_subfolder":
            _png(root / "HR" / f"{n}.png", 30, 34, i)
        else:
            _png(root / "image_SRF_2" / f"img_{i:03d}_SRF_2_HR.png", 30, 34, i)
            _png(root / "image_SRF_2" / f"img_{i:03d}_SRF_2_LR.png", 15, 17, i)
    train = tmp_path / "train"
    _png(train / "a.png", 40, 40, 7, grey=True)        # grey images are replicated to RGB
    dm = evaluators.get_datamodule("set5", root=str(root), train_root=str(train), scale=2, patch_size=8, patches_per_epoch=3)
    dm.setup()
    assert len(dm.val_set) == 5 and all(v[1].shape == (3, 30, 34) for v in dm.val_set)
    assert dm.train_names == ["a.png"] and dm.train_set[0][1].shape == (3, 16, 16)
    split = evaluators.get_datamodule("urban100", root=str(root), scale=2, patch_size=8, val_fraction=0.4)
    split.setup()
    assert set(split.train_names).isdisjoint(split.val_names) and len(split.val_names) == 2


def test_bad_folders_fail_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="div2k: root .* is not a directory") as info:
        evaluators.get_datamodule("div2k", root=str(tmp_path / "nope"))
    assert "\n" not in str(info.value)
    (tmp_path / "DIV2K_train_HR").mkdir()
    with pytest.raises(ValueError, match="lacks images in DIV2K_train_HR"):
        evaluators.get_datamodule("div2k", root=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        evaluators.get_datamodule("b100", root=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not in the installed scikit-image"):
        evaluators.get_datamodule("skimage-sr", images=["retina_missing.png"])


def test_embedded_data_splits_by_image_and_patches_follow_the_seed():
    dm = evaluators.get_datamodule("skimage-sr", patch_size=8, patches_per_epoch=4, val_patch_size=16)
    assert set(dm._train_idx).isdisjoint(dm._val_idx)
    dm.setup()
    assert set(dm.train_names).isdisjoint(dm.val_names) and len(dm.val_names) == 4
    torch.manual_seed(0)
    a = dm.train_set[0]
    torch.manual_seed(0)
    b = dm.train_set[0]
    assert torch.equal(a[0], b[0]) and a[1].shape == (3, 16, 16)
    v1 = [x[1] for x in dm.val_set]
    v2 = [x[1] for x in dm.val_set]
    assert all(torch.equal(p, q) for p, q in zip(v1, v2))
    assert split_by_image(16, 0.25, 0) == split_by_image(16, 0.25, 0)


def test_evaluate_trains_sr_reports_per_epoch_and_stops_on_request():
    dm = evaluators.get_datamodule("skimage-sr", patch_size=8, patches_per_epoch=16, val_patch_size=16,
                                   val_patches_per_image=2, batch_size=8)
    space = spaces.get_space("edsr-fadn")
    arch = space.complete({"edsr.blocks": 1, "edsr.channels": 8, "fadn.enabled": True, "fadn.num_branches": 2,
                           "fadn.low_op": "identity"})
    model = supernets.build(space, arch, **dm.builder_kwargs())
    seen = []

    def reporter(epoch, metrics):
        seen.append((epoch, metrics))
        return epoch == 1

    out = evaluators.evaluate(model, datamodule=dm, epochs=4, optimizer="adam", lr=1e-3, weight_decay=0.0, reporter=reporter)
    assert [e for e, _ in seen] == [0, 1] and out["stopped_early"] and out["epochs"] == 2
    assert {"val_psnr", "val_ssim", "val_loss", "val_cost_ratio"} <= set(seen[0][1])
    assert out["best_val_psnr"] >= out["val_psnr"] > 5 and 0 < out["val_ssim"] <= 1
    assert 0.0 <= out["val_cost_ratio"] <= 1.0 + 1e-9 and model.body[0].measured
