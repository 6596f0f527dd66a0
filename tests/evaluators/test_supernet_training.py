"""Supernet training with Lightning: strict fairness, gradient accumulation, recipes, resume."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

import evaluators
import supernets
from evaluators.callbacks import AdaptiveLRCallback, ProgressScheduleCallback
from evaluators.supernet import fixed_batches, load_supernet, make_module, save_supernet, score_inherited, train_supernet
from spaces import get_space

# every switchable layer has 4 choices, except blocks (2, which divides 4): small and quick
SMALL = {**{f"stage{s}.op": ["conv", "adder", "binary", "winograd_adder"] for s in (1, 2, 3)},
         **{f"stage{s}.width": [0.25, 0.5, 0.75, 1.0] for s in (1, 2, 3)},
         **{f"stage{s}.blocks": [1, 2] for s in (1, 2, 3)}}
FIXED = {f"stage{s}.bits": 32 for s in (1, 2, 3)}


def _small_supernet(ops=None, fixed=None, widths=None):
    narrow = dict(SMALL)
    if ops:
        narrow.update({f"stage{s}.op": ops for s in (1, 2, 3)})
    if widths:
        narrow.update({f"stage{s}.width": widths for s in (1, 2, 3)})
    space = get_space("addernet-resnet").restricted(narrow)
    torch.manual_seed(0)
    return supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10, fixed={**FIXED, **(fixed or {})})


@pytest.fixture(scope="module")
def digits():
    return evaluators.get_datamodule("digits", batch_size=32)


class _Capture(Callback):
    """Before the recipe callbacks: the batch of the step and the raw accumulated gradients."""

    def __init__(self) -> None:
        self.batch = None
        self.grads = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = [t.clone() for t in batch]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads = {n: p.grad.clone() for n, p in pl_module.supernet.named_parameters() if p.grad is not None}


def test_strict_fair_step_gradient_is_the_sum_of_single_path_gradients(digits):
    sn = _small_supernet(ops=["conv", "adder", "binary"], widths=[0.25, 0.5, 0.75])  # every layer: m <= 3
    initial = copy.deepcopy(sn)
    capture = _Capture()
    module = make_module(sn, sampling="strict-fair", epochs=1, seed=4)
    paths_seen = []
    draw = module.sampler.paths

    def recording():
        p = draw()
        paths_seen.append(p)
        return p

    module.sampler.paths = recording
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[capture, AdaptiveLRCallback()])
    trainer.fit(module, datamodule=digits)
    assert len(paths_seen) == 1 and len(paths_seen[0]) == 3  # m = 3 families -> 3 paths
    x, y = capture.batch
    reference = {n: torch.zeros_like(p) for n, p in initial.named_parameters()}
    initial.train()
    for path in paths_seen[0]:
        initial.zero_grad()
        initial.set_active(path)
        F.cross_entropy(initial(x), y).backward()
        for n, p in initial.named_parameters():
            if p.grad is not None:
                reference[n] += p.grad
    used = {n for n, g in reference.items() if g.abs().sum() > 0}
    assert used and used <= set(capture.grads)
    for n in used:
        assert torch.allclose(capture.grads[n], reference[n], atol=1e-6, rtol=1e-5), n
    # every family got a gradient in that one step (strict fairness over the op layer)
    for op in ("conv", "adder", "binary"):
        assert any(n.startswith(f"stages.0.{op}.") for n in used)


def test_strict_fair_counters_equal_steps_and_recipes_act(digits):
    sn = _small_supernet(fixed={"recipe.lp_schedule": True}, widths=[0.25, 0.5])  # m = 4 (ops); 2 divides 4
    res = train_supernet(sn, datamodule=digits, sampling="strict-fair", epochs=2, seed=1,
                         trainer_kwargs={"limit_train_batches": 3, "limit_val_batches": 1})
    steps = res["steps"]
    assert steps == 6
    for label, counts in res["counts"].items():
        m = len(counts)
        assert set(counts.values()) == {steps * 4 // m}, (label, counts)
    adders = [m for m in sn.modules() if type(m).__name__ == "AdderConv2d"]
    assert adders and all(a.p == 1.0 for a in adders)  # lp schedule 2 -> 1 ran inside the supernet
    assert [r["epoch"] for r in res["history"]] == [0.0, 1.0] and "val_accuracy_largest" in res["history"][-1]


def test_alr_rescales_adder_gradients_inside_the_supernet(digits):
    sn = _small_supernet(ops=["adder"])
    seen = {}

    class After(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            w = pl_module.supernet.stages[1]["adder"][0].conv1.main
            seen["norm"] = float(w.weight.grad.norm())
            seen["k"] = w.weight.numel()

    import pytorch_lightning as pl

    module = make_module(sn, sampling="sandwich", epochs=1, seed=0, sampler_options={"n_random": 0})
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[AdaptiveLRCallback(), After()])
    trainer.fit(module, datamodule=digits)
    # the largest path used every filter of that layer: ||g|| = eta * sqrt(k) after ALR
    assert seen["norm"] == pytest.approx(0.2 * seen["k"] ** 0.5, rel=1e-4)


def test_resume_continues_from_the_last_checkpoint(tmp_path, digits):
    kw = dict(datamodule=digits, sampling="uniform", seed=2, out_dir=tmp_path,
              trainer_kwargs={"limit_train_batches": 2, "limit_val_batches": 1})
    sn = _small_supernet(ops=["conv"])
    first = train_supernet(sn, epochs=1, **kw)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and first["resumed_from"] is None
    sn2 = _small_supernet(ops=["conv"])
    second = train_supernet(sn2, epochs=2, **kw)
    assert second["resumed_from"] and second["steps"] == 4  # sampler state restored: 2 + 2 steps
    assert [r["epoch"] for r in second["history"]] == [1.0]


def test_saved_supernet_scores_the_same(tmp_path, digits):
    sn = _small_supernet(ops=["conv", "binary"])
    recal, val = fixed_batches(digits, 2)
    arch = {"stage1.op": "binary", "stage1.width": 0.5, "stage1.blocks": 1, "stage2.op": "conv", "stage2.width": 1.0,
            "stage2.blocks": 2, "stage3.op": "conv", "stage3.width": 0.25, "stage3.blocks": 1}
    a = score_inherited(sn, arch, recal, val)
    save_supernet(sn, tmp_path)
    b = score_inherited(load_supernet(tmp_path), arch, recal, val)
    assert a == b and 0.0 <= a["val_accuracy"] <= 1.0
