"""Model size and arithmetic counts reported with every evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of trainable parameter elements."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_macs(model: nn.Module, input_shape: Sequence[int], seed: int = 0) -> int:
    """Multiply-accumulates of one forward pass at batch size 1, as ``flops / 2`` of
    ``torch.utils.flop_counter.FlopCounterMode``.

    Meaning: the multiply-accumulates that PyTorch's matmul/convolution/attention kernels actually
    execute. Element-wise work (activations, norms, bias adds, pooling) is not counted, and neither
    is an op that computes without those kernels -- e.g. an adder layer built from ``|x - w|``
    sums counts 0, which is the point of adder networks. An op that *simulates* cheaper arithmetic
    with a float kernel (a binary conv run as ``F.conv2d`` on +-1 values) is counted at the float
    kernel's MACs; its real cost is the hardware model's job (``hw_cost``). Dynamic ops are counted
    on one random input (seeded) in eval mode.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *tuple(int(s) for s in input_shape)), generator=gen).to(device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)
