"""Workload-dict builders for the hw_cost tests (no spaces/supernets imports: they are written concurrently)."""

from __future__ import annotations

import numpy as np


def conv(op: str, cin: int, cout: int, hw: int, k: int = 3, stride: int = 1, bits: int = 8, name: str = "") -> dict:
    ho = max(1, hw // stride)
    pix = ho * ho
    return dict(name=name or f"{op}_{cin}_{cout}_{hw}", op=op, ops=pix * cout * cin * k * k, w_bits=bits, a_bits=bits,
                params=cout * cin * k * k, in_elems=cin * hw * hw, out_elems=cout * pix, in_channels=cin,
                out_channels=cout, kernel=k * k, out_pixels=pix)


def resnet(op: str = "conv", bits: int = 8, widths=(16, 32, 64), blocks=(3, 3, 3), stem_op: str | None = None,
           fc_op: str = "linear", hw: int = 32, stem_bits: int | None = None) -> list[dict]:
    """A CIFAR ResNet (ResNet-20 by default) as workload dicts: stem, 3 stages of basic blocks
    (conv-BN-ReLU fused, conv, residual add), global pool and the classifier."""
    stem_op = stem_op or op
    wl = [conv(stem_op, 3, widths[0], hw, bits=stem_bits or bits, name="stem")]
    c = widths[0]
    for s, (cout, nb) in enumerate(zip(widths, blocks)):
        for b in range(nb):
            stride = 2 if (s > 0 and b == 0) else 1
            wl.append(conv(op, c, cout, hw, stride=stride, bits=bits, name=f"s{s}b{b}.conv1"))
            hw = max(1, hw // stride)
            e = cout * hw * hw
            wl.append(dict(name=f"s{s}b{b}.bn1", op="norm", ops=e, a_bits=bits, w_bits=bits, in_elems=e, out_elems=e, fused=True))
            wl.append(conv(op, cout, cout, hw, bits=bits, name=f"s{s}b{b}.conv2"))
            wl.append(dict(name=f"s{s}b{b}.add", op="eltwise", ops=2 * e, a_bits=bits, w_bits=bits, in_elems=2 * e, out_elems=e))
            c = cout
    wl.append(dict(name="pool", op="pool", ops=c * hw * hw, a_bits=bits, w_bits=bits, in_elems=c * hw * hw, out_elems=c))
    if fc_op == "linear":
        wl.append(dict(name="fc", op="linear", ops=c * 10, a_bits=bits, w_bits=bits, params=c * 10, in_elems=c, out_elems=10,
                       in_channels=c, out_channels=10, kernel=1, out_pixels=1))
    else:
        wl.append(conv(fc_op, c, 10, 1, k=1, bits=bits, name="fc"))
    return wl


def random_arch(rng: np.random.Generator) -> dict:
    """Random ResNet-like configuration (what a built-in space would sample)."""
    return dict(
        op=str(rng.choice(["conv", "adder_conv", "binary_conv"])),
        bits=int(rng.choice([4, 6, 8, 16])),
        widths=tuple(int(w) for w in np.sort(rng.choice([8, 16, 24, 32, 48, 64, 96, 128], size=3))),
        blocks=tuple(int(b) for b in rng.integers(1, 4, size=3)),
    )


def build(cfg: dict) -> list[dict]:
    bits = 1 if cfg["op"] == "binary_conv" else cfg["bits"]
    # binary networks keep an 8-bit multiplication stem (FINN practice, spec §4.3)
    binary = cfg["op"] == "binary_conv"
    return resnet(cfg["op"], bits, cfg["widths"], cfg["blocks"], stem_op="conv" if binary else None,
                  stem_bits=8 if binary else None)
