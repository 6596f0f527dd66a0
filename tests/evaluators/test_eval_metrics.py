import torch
from torch import nn

from evaluators import count_macs, count_params


class AbsDiffLinear(nn.Module):
    """An adder-style layer: -sum|x - w|, no multiplications."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x):
        return -(x.flatten(1).unsqueeze(1) - self.weight).abs().sum(-1)


def test_linear_macs_equal_hand_count():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    assert count_macs(model, (1, 8, 8)) == 64 * 32 + 32 * 10


def test_conv_macs_equal_hand_count():
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # 8x8 out: 8*8 pixels * 8 out * 1 in * 9 taps
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, groups=2),  # 3x3 out: 9 pixels * 8 out * (8/2) in * 9 taps
        nn.Flatten(),
        nn.Linear(72, 10),
    )
    assert count_macs(model, (1, 8, 8)) == 8 * 8 * 8 * 9 + 9 * 8 * 4 * 9 + 72 * 10


def test_multiplication_free_layer_counts_zero_and_mode_restored():
    model = nn.Sequential(AbsDiffLinear(64, 10))
    model.train()
    assert count_macs(model, (1, 8, 8)) == 0
    assert model.training


def test_params_count_trainable_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == 3 + 3 * 2 + 2
