"""One-shot mode for image-to-image tasks (evaluators/supernet_image.py): the supernet trains on the
pixel loss with every sampled path, and a candidate's inherited score is measured exactly as a
trained candidate's (the task module's metrics) plus its size, from the extracted sub-network."""

from __future__ import annotations

import pytest
import torch

import evaluators
from evaluators.metrics import model_size
from evaluators.supernet_image import ImageSupernetModule, image_batches, inherited_metrics, metric_module, score_image
from spaces import get_space
from supernets import build_supernet
from supernets.sampling import make_path_sampler

SR = {"scale": 2, "patch_size": 12, "patches_per_epoch": 8, "val_patch_size": 24, "val_patches_per_image": 1, "batch_size": 4}


def _sr_supernet():
    space = get_space("gan-generator-sr").restricted({"body.b1.op": ["conv3x3", "resblock"], "head.width": [0.25, 0.5]})
    fixed = {k: v for k, v in space.default().items() if k not in ("body.b1.op", "head.width", "body.b2.keep")}
    torch.manual_seed(0)
    return build_supernet(space, input_shape=(3, 12, 12), num_classes=0, fixed=fixed)


def test_inherited_score_is_the_task_metrics_of_the_extracted_network():
    sn = _sr_supernet()
    dm = evaluators.get_datamodule("skimage-sr", images=("astronaut.png", "camera.png", "coffee.png", "chelsea.png"), **SR)
    recal, val = image_batches(dm, 1)
    scorer = metric_module("superres", dm)
    arch = {"body.b1.op": "resblock", "head.width": 0.25, "body.b2.keep": False}
    got = score_image(sn, arch, recal, val, scorer, "val_psnr")
    assert set(inherited_metrics("superres")) <= set(got)
    sub = sn.extract(arch).eval()
    assert got["size_mb"] == pytest.approx(model_size(sub)["size_mb"]) and got["size_mib"] < got["size_mb"]
    # the same metric objects on the extracted network's outputs give the same PSNR
    for m in scorer.val_metrics.values():
        m.reset()
    with torch.no_grad():
        for x, y in val:
            p, t = scorer.prepare(sub(x), y)
            scorer.val_metrics["psnr"].update(p, t)
    assert got["val_psnr"] == pytest.approx(float(scorer.val_metrics["psnr"].compute()), abs=1e-4)
    smaller = score_image(sn, {**arch, "body.b1.op": "conv3x3"}, recal, val, scorer, "val_psnr")
    assert smaller["size_mb"] < got["size_mb"]


def test_one_step_trains_every_sampled_path_on_the_pixel_loss():
    sn = _sr_supernet()
    sampler = make_path_sampler("strict-fair", sn.choice_layers(), seed=0)
    module = ImageSupernetModule(sn, sampler, optimizer="adam", lr=1e-3)
    x, y = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)
    before = {n: p.detach().clone() for n, p in sn.named_parameters()}
    opt = torch.optim.SGD(sn.parameters(), lr=0.1)
    module.optimizers = lambda: opt
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *a, **k: None
    module.training_step((x, y), 0)
    assert sampler.count("body.b1.op", "conv3x3") == sampler.count("body.b1.op", "resblock") == 1
    changed = {n for n, p in sn.named_parameters() if not torch.equal(p, before[n])}
    # both body.b1 ops were sampled in one strict-fair step: both got an update
    assert any("conv3x3" in n for n in changed) and any("resblock" in n for n in changed)


def test_translation_scoring_reports_fid_and_kid():
    space = get_space("gan-generator")
    fixed = {k: v for k, v in space.preset("slim-half").items() if k != "body.b2.keep"}
    fixed.update({k: 0.25 for k in fixed if k.endswith(".width")})
    torch.manual_seed(0)
    sn = build_supernet(space, input_shape=(3, 16, 16), num_classes=0, fixed=fixed)
    dm = evaluators.get_datamodule("skimage-edges", images=("astronaut.png", "camera.png", "coffee.png", "chelsea.png"),
                                   crop_size=16, pairs_per_epoch=4, val_crops_per_image=2, batch_size=4, max_side=48)
    recal, val = image_batches(dm, 1)
    got = score_image(sn, {"body.b2.keep": False}, recal, val, metric_module("translation", dm, {"teacher": "ignored"}), "val_fid")
    assert {"val_fid", "best_val_fid", "val_kid", "val_loss", "size_mb"} <= set(got) and got["val_fid"] >= 0


def test_translation_supernet_trains_with_the_gan_losses():
    """One-shot mode picks the GAN supernet module (generator + the task's PatchGAN) for translation data."""
    from evaluators.gan import GANSupernetModule, PatchDiscriminator
    from evaluators.supernet import make_module

    dm = evaluators.get_datamodule("skimage-edges", images=("astronaut.png", "camera.png", "coffee.png", "chelsea.png"),
                                   crop_size=16, pairs_per_epoch=4, val_crops_per_image=2, batch_size=4, max_side=48)
    dm.setup("fit")
    space = get_space("gan-generator")
    sn = build_supernet(space, input_shape=(3, 16, 16), num_classes=0,
                        fixed={k: v for k, v in space.preset("slim-half").items() if k != "body.b2.keep"})
    m = make_module(sn, sampling="strict-fair", epochs=1, lr=1e-3, optimizer="adam", task="translation", datamodule=dm)
    assert isinstance(m, GANSupernetModule) and isinstance(m.discriminator, PatchDiscriminator) and m.model is sn
    assert type(make_module(_sr_supernet(), sampling="uniform", epochs=1, task="superres")) is ImageSupernetModule
