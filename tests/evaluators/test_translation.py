"""Paired translation: data (embedded edges, side-by-side folders), the GAN module, FID/KID, model size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import evaluators
import supernets
from evaluators.data import get_datamodule
from evaluators.fid import GenerationMetrics, RandomConvFeatures, extractor_identity
from evaluators.gan import GANModule, PatchDiscriminator, patch_layers
from evaluators.metrics import model_size
from evaluators.tasks import get_task
from spaces import get_space

SMALL = {"images": ("camera.png", "coins.png", "moon.png", "page.png"), "max_side": 64, "crop_size": 16,
         "pairs_per_epoch": 8, "val_crops_per_image": 4, "batch_size": 4}


def _generator(shape=(3, 16, 16), width=0.25):
    sp = get_space("gan-generator").with_options({"base_width": 8})
    arch = sp.complete({"enc.stem.width": width, "enc.d1.width": width, "enc.d2.width": width, "dec.u1.width": width,
                        "dec.u2.width": width, **{f"body.b{i}.keep": False for i in range(2, 7)}})
    return supernets.build(sp, arch, input_shape=shape)


# -- FID / KID ---------------------------------------------------------------------------------

def test_fid_of_a_set_against_itself_is_zero_and_grows_with_distortion():
    torch.manual_seed(0)
    real = torch.rand(32, 3, 24, 24)
    m = GenerationMetrics(kid_subset_size=16)
    m.update(real, real)
    same = m.compute()
    assert abs(same["fid"]) < 1e-4 and abs(same["kid"]) < 1e-2
    values = []
    for noise in (0.05, 0.2):
        m.reset()
        m.update((real + noise * torch.randn_like(real)).clamp(0, 1), real)
        values.append(m.compute()["fid"])
    assert 1e-3 < values[0] < values[1]


def test_extractor_identity_names_the_weights():
    a, b = RandomConvFeatures(seed=0), RandomConvFeatures(seed=1)
    assert extractor_identity(a) == extractor_identity(RandomConvFeatures(seed=0))
    assert extractor_identity(a).startswith("random-cnn-v1:") and extractor_identity(a) != extractor_identity(b)
    assert not list(a.parameters()) and a.train().training is False  # frozen, always eval
    assert get_task("translation").metric_identity({}) == {"fid.extractor": extractor_identity(a)}


def test_fid_needs_two_images():
    m = GenerationMetrics()
    m.update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 2"):
        m.compute()


# -- data --------------------------------------------------------------------------------------

def test_skimage_edges_pairs_are_black_edges_on_white_and_split_by_image():
    dm = get_datamodule("skimage-edges", **SMALL)
    dm.setup("fit")
    assert dm.task == "translation" and dm.input_shape == (3, 16, 16)
    assert set(dm.train_names).isdisjoint(dm.val_names) and len(dm.train_names) + len(dm.val_names) == 4
    a, b = dm.train_set[0]
    assert a.shape == b.shape == (3, 16, 16) and 0 <= float(a.min()) and float(b.max()) <= 1
    edges = dm.val_set[0][0]
    assert set(torch.unique(edges).tolist()) <= {0.0, 1.0} and float(edges.mean()) > 0.5  # mostly white
    assert dm.split_keys() == {"val": dm.val_names}


def _side_by_side(path, a_rgb, b_rgb, size=16):
    arr = np.zeros((size, 2 * size, 3), dtype=np.uint8)
    arr[:, :size] = a_rgb
    arr[:, size:] = b_rgb
    Image.fromarray(arr).save(path)


def test_side_by_side_folder_loader(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            _side_by_side(tmp_path / split / f"{i}.png", (255, 0, 0), (0, 0, 255))
    dm = get_datamodule("pairs-folder", root=str(tmp_path), crop_size=16, pairs_per_epoch=4, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2 and dm.val_names == ["0.png", "1.png"]
    a, b = dm.val_set[0]
    assert torch.equal(a[0], torch.ones(16, 16)) and float(a[2].max()) == 0  # A = left half (red)
    assert torch.equal(b[2], torch.ones(16, 16)) and float(b[0].max()) == 0  # B = right half (blue)
    swapped = get_datamodule("pairs-folder", root=str(tmp_path), crop_size=16, direction="BtoA")
    swapped.setup("fit")
    assert torch.equal(swapped.val_set[0][0], b)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (2, 3, 16, 16)


def test_side_by_side_without_val_folder_splits_by_image_and_resizes(tmp_path):
    (tmp_path / "train").mkdir()
    for i in range(4):
        _side_by_side(tmp_path / "train" / f"{i}.png", (i * 40, 0, 0), (0, i * 40, 0), size=24)
    dm = get_datamodule("pairs-folder", root=str(tmp_path), crop_size=16, load_size=16, val_fraction=0.5)
    dm.setup("fit")
    assert len(dm.val_names) == 2 and set(dm.train_names).isdisjoint(dm.val_names)
    assert dm.val_set[0][0].shape == (3, 16, 16)


def test_side_by_side_bad_input_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="pairs-folder: expected a folder") as info:
        get_datamodule("pairs-folder", root=str(tmp_path / "missing"))
    assert "\n" not in str(info.value)
    (tmp_path / "train").mkdir()
    Image.fromarray(np.zeros((8, 15, 3), dtype=np.uint8)).save(tmp_path / "train" / "odd.png")
    Image.fromarray(np.zeros((8, 15, 3), dtype=np.uint8)).save(tmp_path / "train" / "odd2.png")
    dm = get_datamodule("pairs-folder", root=str(tmp_path), crop_size=4, val_fraction=0.5)
    with pytest.raises(ValueError, match="even width"):
        dm.setup("fit")


# -- the GAN module ----------------------------------------------------------------------------

def test_generator_and_discriminator_both_get_gradients():
    torch.manual_seed(0)
    g = _generator()
    d = PatchDiscriminator(6, ndf=8, n_layers=patch_layers(16))
    assert patch_layers(16) == 2 and patch_layers(32) == 3 and patch_layers(256) == 3
    teacher = _generator()
    module = GANModule(g, d, teacher=teacher, lambda_distill=10.0)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    fake = g(x)
    module.discriminator_loss(x, y, fake).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert all(p.grad is None for p in g.parameters())  # the discriminator step sees a detached fake
    d.zero_grad()
    loss, parts = module.generator_loss(x, y, fake)
    assert set(parts) == {"gan", "l1", "distill"}
    with torch.no_grad():
        assert torch.allclose(parts["distill"], 10.0 * (fake - teacher(x)).abs().mean())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_evaluate_translation_reports_fid_minimised_and_sizes():
    torch.manual_seed(0)
    dm = get_datamodule("skimage-edges", **SMALL)
    model = _generator()
    out = evaluators.evaluate(model, datamodule=dm, epochs=2, optimizer="adam", lr=2e-4, weight_decay=0.0, kid_subset_size=8)
    for key in ("val_fid", "best_val_fid", "val_kid", "val_loss", "size_mb", "size_mib", "file_mb"):
        assert key in out and math.isfinite(out[key]), key
    assert out["best_val_fid"] <= out["val_fid"]
    assert out["epochs"] == 2
    with pytest.raises(TypeError, match="unknown task option"):
        evaluators.evaluate(model, datamodule=dm, epochs=1, fid_extractor="nope")


def test_task_is_minimised_and_names_its_options():
    task = get_task("translation")
    assert task.mode == "min" and task.primary == "val_fid" and "teacher" in task.options
    assert evaluators.task_of_data("pairs-folder").name == "translation"


# -- model size ---------------------------------------------------------------------------------

def test_model_size_in_both_conventions_and_the_stored_file():
    lin = nn.Linear(10, 5)  # 55 parameters
    size = model_size(lin)
    assert size["size_mb"] == pytest.approx(55 * 4 / 1e6) and size["size_mib"] == pytest.approx(55 * 4 / 2 ** 20)
    assert size["file_mb"] > size["size_mb"]  # the zip container and key names add bytes
    g = _generator(width=1.0)
    n = sum(p.numel() for p in g.parameters())
    s = model_size(g)
    assert s["size_mb"] == pytest.approx(n * 4e-6) and s["size_mib"] == pytest.approx(n * 4 / 1048576)
    assert s["size_mb"] <= s["file_mb"] < s["size_mb"] * 1.5


def test_teacher_round_trip(tmp_path):
    from evaluators.gan_teacher import load_generator, train_teacher

    dm = get_datamodule("skimage-edges", **SMALL)
    record = train_teacher(tmp_path / "t", datamodule=dm, preset="slim-half", epochs=1, kid_subset_size=8)
    assert (tmp_path / "t" / "teacher.json").is_file() and "val_fid" in record["metrics"]
    teacher = load_generator(tmp_path / "t")
    assert not teacher.training
    with pytest.raises(ValueError, match="exported generator directory"):
        load_generator(tmp_path / "missing")


# -- the FID Inception from a local file ---------------------------------------------------------

def test_inception_from_a_local_file(tmp_path):
    from evaluators.fid import make_extractor
    from evaluators.inception import InceptionFeatures

    torch.manual_seed(0)
    ref = InceptionFeatures()
    # torchvision's Inception v3 has 27,161,264 parameters; without AuxLogits (3,326,696) and the
    # 1000-class fc (2,049,000) that leaves the FID trunk's 21,785,568
    assert sum(p.numel() for p in ref.parameters()) == 21_785_568
    state = {**ref.state_dict(), "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    torch.save(state, tmp_path / "pt_inception.pth")
    loaded = make_extractor(str(tmp_path / "pt_inception.pth"))
    assert isinstance(loaded, InceptionFeatures) and extractor_identity(loaded) == extractor_identity(ref)
    assert extractor_identity(loaded).startswith("inception:")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded(x), ref(x)) and loaded(x).shape == (2, 2048)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold the FID Inception") as info:
        make_extractor(str(tmp_path / "other.pth"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="found nothing"):
        make_extractor(str(tmp_path / "missing.pth"))


def test_gan_supernet_module_trains_every_operator_and_scores_subnetworks():
    import pytorch_lightning as pl

    from evaluators.gan import GANSupernetModule, score_generator
    from spaces.gan_generator import dimension_groups
    from supernets.sampling import make_path_sampler

    torch.manual_seed(0)
    sp = get_space("gan-generator").with_options({"base_width": 4})
    groups, default = dimension_groups(sp), sp.default()
    fixed = {lab: default[lab] for lab in groups["path"] + groups["channel"] if lab in default}
    fixed.update({**{f"body.b{i}.keep": False for i in range(2, 7)},
                  **{lab: "conv" for lab in groups["operator"] if lab.endswith(".family")},
                  **{lab: 32 for lab in groups["operator"] if lab.endswith(".bits")}})
    sn = supernets.build_supernet(sp, input_shape=(3, 16, 16), num_classes=0, fixed=fixed)
    sampler = make_path_sampler("strict-fair", sn.choice_layers(), seed=0)
    module = GANSupernetModule(sn, PatchDiscriminator(6, 8, patch_layers(16)), sampler, kid_subset_size=8, max_epochs=1)
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    dm = get_datamodule("skimage-edges", **{**SMALL, "pairs_per_epoch": 4})
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=dm)
    assert sampler.steps == 1 and all(sampler.count(lab.label, c) == 1 for lab in sn.choice_layers() for c in lab.choices)
    after = sn.state_dict()
    changed = {k.split(".choices.")[1].split(".")[0] for k in before if ".choices." in k and not torch.equal(before[k], after[k])}
    assert changed == {f"{op}-conv" for op in ("conv3x3", "conv1x1", "resblock", "dwsep", "dil3x3")}
    assert "val_fid" in trainer.callback_metrics
    sn.set_active({"body.b1.op": "dwsep", "enc.d1.op": "conv1x1"})
    scores = score_generator(sn, dm.val_dataloader())
    assert set(scores) == {"fid", "kid", "l1"} and all(math.isfinite(v) for v in scores.values())
    assert sn.training  # mode restored
