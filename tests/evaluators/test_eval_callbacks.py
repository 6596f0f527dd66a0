import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from evaluators import (
    AdaptiveLRCallback,
    ClassificationModule,
    ProgressScheduleCallback,
    default_recipe_callbacks,
    evaluate,
    get_datamodule,
)
from evaluators._quiet import quiet_lightning


class FakeAdder(nn.Module):
    """Stands in for an adder op: ALR rescales its weight gradient to eta*sqrt(k)/||g|| (AdderNet Eq. 13)."""

    def __init__(self, alr: str = "accumulated", eta: float = 0.2) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.alr, self.eta = alr, eta
        self.calls = 0

    def forward(self, x):
        return self.linear(x.flatten(1))

    def apply_alr(self) -> None:
        self.calls += 1
        g = self.linear.weight.grad
        g.mul_(self.eta * math.sqrt(g.numel()) / g.norm().clamp_min(1e-12))


class ProgressRecorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen: list[float] = []

    def forward(self, x):
        return self.linear(x.flatten(1))

    def set_progress(self, fraction: float) -> None:
        self.seen.append(fraction)


def _fit_one_step(model: nn.Module, callbacks, accumulate: int = 1) -> None:
    module = ClassificationModule(model, num_classes=10, lr=1.0, weight_decay=0.0, scheduler="none")
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=1, limit_train_batches=accumulate, limit_val_batches=0, accumulate_grad_batches=accumulate,
            callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu",
        )
        trainer.fit(module, datamodule=get_datamodule("digits"))


@pytest.mark.parametrize("accumulate", [1, 2])
def test_optimizer_step_sees_the_rescaled_gradient(accumulate):
    torch.manual_seed(0)
    model = FakeAdder()
    w0 = model.linear.weight.detach().clone()
    _fit_one_step(model, [AdaptiveLRCallback()], accumulate)
    # first SGD step with momentum: buffer = grad, so the update is exactly -lr * (rescaled grad)
    step = (model.linear.weight.detach() - w0).norm()
    assert model.calls == 1  # once per optimizer step, after accumulation
    assert step.item() == pytest.approx(0.2 * math.sqrt(640), rel=1e-5)


def test_alr_skipped_unless_accumulated_mode():
    torch.manual_seed(0)
    model = FakeAdder(alr="backward")
    w0 = model.linear.weight.detach().clone()
    _fit_one_step(model, [AdaptiveLRCallback()])
    assert model.calls == 0
    assert (model.linear.weight.detach() - w0).norm().item() != pytest.approx(0.2 * math.sqrt(640), rel=1e-3)


def test_default_recipe_callbacks_follow_the_model():
    assert default_recipe_callbacks(nn.Linear(2, 2)) == []
    kinds = [type(cb) for cb in default_recipe_callbacks(nn.Sequential(FakeAdder(), ProgressRecorder()))]
    assert kinds == [AdaptiveLRCallback, ProgressScheduleCallback]
    assert default_recipe_callbacks(FakeAdder(alr="off")) == []


def test_evaluate_adds_recipes_and_progress_is_per_epoch():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.adder, self.recorder = FakeAdder(), ProgressRecorder()

        def forward(self, x):
            return self.adder(x) + 0.0 * self.recorder(x)

    model = Net()
    evaluate(model, epochs=4, lr=0.01, batch_size=256)
    # epoch starts reach the end of the schedule on the last epoch; training end sets 1.0 again
    assert model.recorder.seen == [0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    assert model.adder.calls == 4 * math.ceil(1149 / 256)  # every optimizer step of 4 epochs (1149 digits training images)


def test_progress_per_step():
    model = ProgressRecorder()
    module = ClassificationModule(model, num_classes=10, max_epochs=2)
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
            callbacks=[ProgressScheduleCallback("step")],
        )
        trainer.fit(module, datamodule=get_datamodule("digits"))
    assert model.seen == [0.0, 0.25, 0.5, 0.75, 1.0]  # per batch, then the end of training
    with pytest.raises(ValueError, match="granularity"):
        ProgressScheduleCallback("batch")


def test_declared_parameters_get_no_weight_decay():
    from torch import nn

    from evaluators.classification import param_groups

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.score = nn.Parameter(torch.ones(3))

        def no_weight_decay(self):
            return {"score"}

    model = nn.Sequential(nn.Linear(3, 3), Gate())
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in no_decay["params"]] == [torch.Size([3])] and no_decay["params"][0] is model[1].score
    assert len(decay["params"]) == 2  # the linear weight and bias stay decayed, as AdderNet's recipe does
