"""VTP and ManiDP recipes inside a real Lightning fit (tiny models, random data, a few steps)."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import spaces.tnt  # noqa: F401  (registers the tnt space until spaces/__init__ imports it)
from evaluators.classification import ClassificationModule
from evaluators.recipes import ManiDPCallback, ManiDPLoss, VTPCallback, measure_active_ratios, recipe_callbacks
from spaces import get_space
from supernets.build import build
from supernets.manidp import add_dynamic_gates, dynamic_convs, dynamic_gates, remain_rate
from supernets.vtp import gated_layers, gates

torch.set_num_threads(1)


def _loaders(shape=(1, 8, 8), n=48, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=16, shuffle=False), DataLoader(ds, batch_size=24)


def _trainer(epochs, callbacks):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks)


def _tiny_tnt(**over):
    sp = get_space("tnt")
    arch = sp.complete({"tnt.depth": 2, "tnt.embed_dim": 32, "tnt.inner_dim": 8, "tnt.mlp_ratio": 2, "vtp.enabled": True, **over})
    return build("tnt", arch, input_shape=(1, 8, 8), num_classes=4)


def test_vtp_callback_prunes_then_finetunes_slim_model():
    torch.manual_seed(0)
    model = _tiny_tnt(**{"vtp.prune_rate": 0.5, "vtp.sparse_fraction": 0.5, "vtp.lambda": 1e-3})
    dense_params = sum(p.numel() for p in model.parameters())
    train, val = _loaders()
    cb = VTPCallback()
    module = ClassificationModule(model, num_classes=4, lr=0.05, max_epochs=2)
    trainer = _trainer(2, [cb])
    trainer.fit(module, train, val)
    assert cb.prune_epoch == 1 and cb.pruned
    assert not gated_layers(model) and not gates(model)  # gates folded away
    assert sum(p.numel() for p in model.parameters()) < dense_params
    assert cb.kept_fraction == pytest.approx(0.5, abs=0.1)
    # the rebuilt optimiser trains the slim parameters
    opt_params = {id(p) for grp in trainer.optimizers[0].param_groups for p in grp["params"]}
    assert all(id(p) in opt_params for p in model.parameters() if p.requires_grad)
    assert "vtp_kept_fraction" in trainer.callback_metrics
    # the schedule continued after the rebuild: a cosine over 2 epochs has decayed to 0 at the end
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_vtp_subgradient_moves_gates_towards_zero():
    torch.manual_seed(0)
    model = _tiny_tnt(**{"vtp.lambda": 1e-3, "vtp.sparse_fraction": 0.8})
    train, val = _loaders()
    cb = VTPCallback(prune_epoch=5)  # never reached: only sparsity training
    module = ClassificationModule(model, num_classes=4, lr=0.1, momentum=0.0, weight_decay=0.0, max_epochs=1, scheduler="none")
    before = torch.cat([g.score.detach().clone() for g in gates(model)])
    _trainer(1, [cb]).fit(module, train, val)
    after = torch.cat([g.score.detach() for g in gates(model)])
    # 3 SGD steps: each subtracts lr * lambda * sign(a) = 1e-4 plus the CE gradient; the L1 part is exact
    assert (after - before).mean().item() < 0


def test_vtp_loss_mode_adds_l1_term_through_auxiliary_loss():
    model = _tiny_tnt(**{"vtp.l1_mode": "loss", "vtp.lambda": 1e-3})
    with torch.no_grad():
        for g in gates(model):
            g.score.fill_(0.5)
    model.train()
    total = sum(g.dim for g in gates(model))
    assert float(model.auxiliary_loss().detach()) == pytest.approx(1e-3 * 0.5 * total, rel=1e-6)
    model.eval()
    assert model.auxiliary_loss() is None


def test_recipe_callbacks_detects_techniques():
    assert [type(c) for c in recipe_callbacks(_tiny_tnt())] == [VTPCallback]
    m = build("addernet-resnet", get_space("addernet-resnet").default(), input_shape=(1, 8, 8), num_classes=4)
    assert recipe_callbacks(m) == []
    add_dynamic_gates(m)
    assert [type(c) for c in recipe_callbacks(m)] == [ManiDPCallback]


def _tiny_resnet(**kw):
    arch = get_space("addernet-resnet").complete({f"stage{s}.width": 0.25 for s in (1, 2, 3)} | {f"stage{s}.blocks": 1 for s in (1, 2, 3)})
    m = build("addernet-resnet", arch, input_shape=(1, 8, 8), num_classes=4)
    return add_dynamic_gates(m, **kw)


def test_manidp_callback_sets_thresholds_and_measures_on_validation():
    torch.manual_seed(0)
    model = _tiny_resnet(target_remain_rate=0.5, lambda_lasso=0.1, lambda_graph=0.1)
    train, val = _loaders()
    cb = ManiDPCallback()
    module = ClassificationModule(model, num_classes=4, lr=0.01, max_epochs=2)
    trainer = _trainer(2, [cb])
    trainer.fit(module, train, val)
    # the initial mean loss was measured, then replaced by epoch means
    assert math.isfinite(float(model.manidp.mean_train_loss))
    # thresholds after epoch 0 is skipped (e >= 1 rule) but the last epoch always updates, at r_T
    assert cb.remain_rates == [pytest.approx(remain_rate(1, 2, 0.5))] and cb.remain_rates[-1] == pytest.approx(0.5)
    assert all(float(g.threshold) > -10000 for g in dynamic_gates(model))
    # the last validation measured the active ratios the hardware cost will use
    ratios = {n: c.active_ratio for n, c in dynamic_convs(model)}
    assert all(r is not None for r in ratios.values())
    assert "val_mean_active_ratio" in trainer.callback_metrics
    assert float(trainer.callback_metrics["val_mean_active_ratio"]) < 1.0
    assert "train_aux_loss" in trainer.callback_metrics
    # measuring again outside Lightning on the same data gives the same numbers
    again = measure_active_ratios(model, val)
    assert again == pytest.approx(ratios)


def test_manidp_loss_module_matches_auxiliary_loss():
    torch.manual_seed(0)
    model = _tiny_resnet(lambda_lasso=0.3, lambda_graph=0.7)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    model.manidp.mean_train_loss.fill_(1.5)
    model.train()
    logits = model(x)
    full = ManiDPLoss(model)(logits, y)
    model.manidp.set_targets(y)
    aux = model.manidp.auxiliary_loss()
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert float(full.detach()) == pytest.approx(float((ce + aux).detach()), rel=1e-5)
