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


# ITU-R BT.601 luma of [0, 1] RGB on the studio range [16, 235] / 255: MATLAB's rgb2ycbcr, which
# the SR benchmarks (EDSR, RCAN, FADN) use for PSNR/SSIM on the Y channel.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Y channel (N, 1, H, W) in [0, 1] of [0, 1] images (N, 3, H, W); one-channel images pass through."""
    if x.dim() != 4:
        raise ValueError(f"rgb_to_y: expected (N, C, H, W) images, found shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"rgb_to_y: expected 1 or 3 channels, found {x.shape[1]}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (_Y_OFFSET + (x * w).sum(1, keepdim=True)) / 255.0


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """Crop ``border`` pixels from every side (the SR benchmarks crop ``scale`` pixels before scoring)."""
    if border <= 0:
        return x
    if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
        raise ValueError(f"shave: a border of {border} px leaves nothing of a {tuple(x.shape[-2:])} image")
    return x[..., border:-border, border:-border]


def quantize_01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid, as an SR output saved as an image would be."""
    return x.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


MB = 1e6  # decimal megabyte
MIB = 2 ** 20  # binary mebibyte
FP32_BYTES = 4


def model_size(model: nn.Module) -> dict[str, float]:
    """Model size in MB in the conventions papers use, since which one a paper means is rarely said:

    * ``size_mb`` = parameters x 4 bytes / 10^6 and ``size_mib`` = parameters x 4 bytes / 2^20
      (every parameter, trainable or not, shared ones once, counted as fp32 whatever its bits:
      the "model size" of GAN-compression papers);
    * ``file_mb`` = bytes of the stored ``state_dict`` (``torch.save``) / 10^6: what a checkpoint
      weighs on disk, buffers (quantiser ranges, batch-norm statistics) and the zip container included.
    """
    import io

    n = sum(p.numel() for p in model.parameters())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return {"size_mb": n * FP32_BYTES / MB, "size_mib": n * FP32_BYTES / MIB, "file_mb": buf.getbuffer().nbytes / MB}
