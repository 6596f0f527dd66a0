import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluators import ClassificationModule, NonFiniteLossError, evaluate, get_datamodule

from eval_helpers import tiny_cnn, tiny_mlp

REPO = Path(__file__).resolve().parents[2]


class NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


def test_cnn_learns_digits_and_result_is_flat():
    torch.manual_seed(0)
    result = evaluate(tiny_cnn(), epochs=3, lr=0.05, seed=0)
    assert result["val_accuracy"] > 0.9  # chance is 0.1
    assert result["best_val_accuracy"] >= result["val_accuracy"]
    assert result["epochs"] == 3 and result["stopped_early"] is False and result["timed_out"] is False
    assert result["params"] == sum(p.numel() for p in tiny_cnn().parameters())
    assert result["macs"] == 8 * 8 * 8 * 9 + 128 * 10
    assert result["wall_time_s"] > 0 and math.isfinite(result["val_loss"])
    assert all(isinstance(v, (int, float, bool)) for v in result.values())
    json.dumps(result)


def test_reporter_called_per_epoch_and_can_stop():
    seen = []

    def report(epoch, metrics):
        seen.append((epoch, metrics))
        return epoch == 1  # prune after the second epoch

    result = evaluate(tiny_mlp(), epochs=5, reporter=report)
    assert [e for e, _ in seen] == [0, 1]
    assert {"val_accuracy", "val_loss", "train_loss"} <= set(seen[0][1])
    assert all(isinstance(v, float) for v in seen[0][1].values())
    assert result["epochs"] == 2 < 5 and result["stopped_early"] is True
    assert result["val_accuracy"] == pytest.approx(seen[-1][1]["val_accuracy"])


def test_reporter_sees_every_epoch_when_not_stopping():
    epochs = []
    result = evaluate(tiny_mlp(), epochs=3, reporter=lambda e, m: epochs.append(e))
    assert epochs == [0, 1, 2] and result["epochs"] == 3 and result["stopped_early"] is False


def test_nan_loss_raises_and_pickles():
    with pytest.raises(NonFiniteLossError, match="epoch 0, global step 0") as err:
        evaluate(NaNModel(), epochs=2)
    assert err.value.stage == "train" and math.isnan(err.value.value)
    again = pickle.loads(pickle.dumps(err.value))
    assert isinstance(again, NonFiniteLossError) and str(again) == str(err.value)


def test_same_seed_same_result_and_seed_matters():
    def run(seed):
        torch.manual_seed(123)  # same initial weights
        return evaluate(tiny_mlp(), epochs=2, seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert a["val_loss"] == b["val_loss"]
    assert a["val_loss"] != c["val_loss"]  # shuffling order follows the seed


def test_time_limit_stops_inside_budget_and_still_scores():
    result = evaluate(tiny_mlp(), epochs=10_000, max_time_s=0.3)
    assert result["timed_out"] is True and result["stopped_early"] is False
    assert result["epochs"] < 10_000 and 0.0 <= result["val_accuracy"] <= 1.0


def test_datamodule_direct_and_options():
    dm = get_datamodule("digits", batch_size=128, seed=5)
    result = evaluate(tiny_mlp(), datamodule=dm, epochs=2, optimizer="adam", lr=1e-2)
    assert result["val_accuracy"] > 0.5
    with pytest.raises(ValueError, match="either datamodule or data_kwargs"):
        evaluate(tiny_mlp(), datamodule=dm, data_kwargs={"seed": 1})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        evaluate(tiny_mlp(), optimizer="lbfgs")
    with pytest.raises(ValueError, match="epochs"):
        evaluate(tiny_mlp(), epochs=0)
    with pytest.raises(ValueError, match=r"logits of shape \(N, 10\)"):
        evaluate(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), epochs=1)


def test_module_default_recipe_is_sgd_momentum_cosine():
    module = ClassificationModule(tiny_mlp(), num_classes=10, max_epochs=4)
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expect = [0.05 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert lrs == pytest.approx(expect)


def test_quiet_and_writes_no_files(tmp_path):
    code = (
        "import torch.nn as nn, evaluators;"
        "m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10));"
        "evaluators.evaluate(m, epochs=1)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_named_real_data_sources_train_end_to_end(tmp_path):
    from eval_helpers import random_cifar_images, write_cifar_batch, write_png
    import numpy as np

    for i in range(1, 6):
        write_cifar_batch(tmp_path / f"data_batch_{i}", random_cifar_images(4, i), [0, 1, 2, 3])
    write_cifar_batch(tmp_path / "test_batch", random_cifar_images(4, 0), [0, 1, 2, 3])
    result = evaluate(tiny_cnn(in_ch=3), data="cifar10", data_kwargs={"root": str(tmp_path), "val_fraction": 0.25}, epochs=1,
                      batch_size=8, test=True)
    assert result["epochs"] == 1 and 0.0 <= result["val_accuracy"] <= 1.0
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_loss"] > 0  # scored on the test batch

    folder = tmp_path / "folder"
    for c, value in (("a", 0), ("b", 255)):
        for i in range(4):
            write_png(folder / c / f"{i}.png", np.full((8, 8), value, dtype=np.uint8))
    result = evaluate(tiny_cnn(in_ch=1, classes=2), data="imagefolder", data_kwargs={"root": str(folder), "val_fraction": 0.5}, epochs=1)
    assert result["epochs"] == 1 and 0.0 <= result["val_accuracy"] <= 1.0


def test_datamodules_pickle_for_ray_workers(tmp_path):
    dm = get_datamodule("digits")
    dm.setup()
    again = pickle.loads(pickle.dumps(dm))
    assert torch.equal(again.val_set.images, dm.val_set.images) and again.input_shape == (1, 8, 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluate_on_gpu():
    result = evaluate(tiny_cnn(), epochs=3, accelerator="gpu")
    assert result["val_accuracy"] > 0.5 and result["macs"] == 8 * 8 * 8 * 9 + 128 * 10
    with pytest.raises(NonFiniteLossError):
        evaluate(NaNModel(), epochs=1, accelerator="gpu")


def test_keyboard_interrupt_propagates_and_sigint_is_restored():
    import signal

    before = signal.getsignal(signal.SIGINT)

    def report(epoch, metrics):
        raise KeyboardInterrupt("cancelled by the search")

    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny_mlp(), epochs=3, reporter=report)
    assert signal.getsignal(signal.SIGINT) is before


class Penalised(nn.Module):
    """A model whose submodule adds a loss term (as a pruning gate's sparsity penalty would)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.net = tiny_mlp()
        self.weight = weight

    def forward(self, x):
        return self.net(x)

    def auxiliary_loss(self):
        return self.weight * sum(p.abs().sum() for p in self.net.parameters())


def test_auxiliary_loss_terms_are_added_and_trained_on():
    reports = []
    torch.manual_seed(0)
    plain = Penalised(0.0)
    evaluate(plain, epochs=2, reporter=lambda e, m: reports.append(m))
    torch.manual_seed(0)
    heavy = Penalised(1e-2)
    evaluate(heavy, epochs=2, reporter=lambda e, m: reports.append(m))
    assert reports[0]["train_aux_loss"] == 0.0 and reports[-1]["train_aux_loss"] > 0
    l1 = lambda m: sum(p.abs().sum().item() for p in m.net.parameters())  # noqa: E731
    assert l1(heavy) < 0.8 * l1(plain)  # the penalty shrank the weights
    with pytest.raises(NonFiniteLossError, match="auxiliary loss"):
        evaluate(Penalised(float("inf")), epochs=1)
