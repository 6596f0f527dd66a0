"""Builder of the ``edsr-fadn`` space: an EDSR-style super-resolution network, optionally with FADN blocks.

Layout of EDSR (Lim et al., CVPR-W 2017, arXiv 1707.02921; the "baseline" is 16 blocks x 64
channels, res_scale 1): subtract the RGB mean, head conv 3x3, a body of residual blocks, a body
conv 3x3 with a global skip, an upsampler (conv to ``C s^2`` + pixel shuffle; x4 = two x2 steps),
a tail conv 3x3, add the mean. The body's convs take the op family of the space (``conv`` or
``adder``, b-bit below 32); head, body-end, upsampler and tail stay float convs (they are a small
share of the MACs and carry the image's dynamic range). With ``fadn.enabled`` every body block is a
``supernets.fadn.FADNBlock`` and the model carries a ``FADNRegularizer`` at ``model.fadn``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from supernets.fadn import EDSRResBlock, FADNBlock, FADNRegularizer, fadn_kwargs

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)  # EDSR-PyTorch's MeanShift constants (DIV2K training set)


class Upsampler(nn.Sequential):
    """conv -> PixelShuffle(2) per factor 2 (scale 2, 4, 8) or one conv -> PixelShuffle(3)."""

    def __init__(self, scale: int, channels: int) -> None:
        layers: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range({2: 1, 4: 2, 8: 3}[scale]):
                layers += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(channels, 9 * channels, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale: expected 2, 3, 4 or 8, found {scale!r}")
        super().__init__(*layers)


class EDSR(nn.Module):
    """EDSR with a body of ``blocks`` (plain ``EDSRResBlock`` or ``FADNBlock``)."""

    def __init__(self, body: Sequence[nn.Module], channels: int, scale: int, in_channels: int = 3,
                 fadn: FADNRegularizer | None = None) -> None:
        super().__init__()
        self.scale = int(scale)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.5,) * in_channels
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        self.head = nn.Conv2d(in_channels, channels, 3, 1, 1)
        self.body = nn.ModuleList(body)
        self.body_conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.upsample = Upsampler(scale, channels)
        self.tail = nn.Conv2d(channels, in_channels, 3, 1, 1)
        if fadn is not None:
            self.fadn = fadn
            fadn.blocks = [b for b in self.body if isinstance(b, FADNBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reg = getattr(self, "fadn", None)
        if reg is not None:
            reg.set_input(x)
        h = self.head(x - self.rgb_mean)
        r = h
        for block in self.body:
            r = block(r)
        h = h + self.body_conv(r)
        return self.tail(self.upsample(h)) + self.rgb_mean


def build_edsr_fadn(arch: Mapping[str, Any], *, input_shape: Sequence[int] = (3, 24, 24), scale: int | None = None,
                    **_: Any) -> nn.Module:
    """Build from a validated ``edsr-fadn`` architecture. ``scale``: the data's upscaling factor,
    which must equal ``edsr.scale`` (the task decides the scale; the architecture must match it)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (channels, height, width), found {tuple(input_shape)!r}")
    s = int(arch["edsr.scale"])
    if scale is not None and int(scale) != s:
        raise ValueError(f"edsr.scale: the data is x{int(scale)} but the architecture upscales x{s}; "
                         f"fix edsr.scale={int(scale)} (or set the data's scale to {s})")
    c, n_blocks = int(arch["edsr.channels"]), int(arch["edsr.blocks"])
    op, bits, res_scale = str(arch["edsr.op"]), int(arch.get("edsr.bits", 32)), float(arch["edsr.res_scale"])
    reg: FADNRegularizer | None = None
    if arch.get("fadn.enabled"):
        k = int(arch["fadn.num_branches"])
        kinds = [arch["fadn.low_op"], *([arch["fadn.mid_op"]] if k == 3 else []), arch["fadn.high_op"]]
        reg = FADNRegularizer(**fadn_kwargs(arch))
        body: list[nn.Module] = []
        for _i in range(n_blocks):
            blk = FADNBlock(c, kinds, op, bits, res_scale, tau=float(arch["fadn.gumbel_tau"]),
                            granularity=int(arch["fadn.mask_granularity"]), dilate_high=bool(arch["fadn.dilate_high"]))
            blk.target_cost = reg.target_cost
            body.append(blk)
    else:
        body = [EDSRResBlock(c, op, bits, res_scale) for _ in range(n_blocks)]
    return EDSR(body, c, s, int(input_shape[0]), reg)
