"""Speed and calibration figures of the FPGA cost model (hw_cost); prints a small report.

Run:  python benchmarks/cost_model.py [--archs 10000] [--repeats 3]

Measures (one run, same machine, so the ratios are comparable):
  * estimate_batch throughput (architectures / s) from workload dicts and from a prebuilt
    structured array (the >= 10,000 arch/s target of the config-level fast path);
  * tracing + estimate of a ResNet-50 at 1x3x224x224 (target < 1 s), built here without torchvision;
  * the calibration ratios (AdderNet-FPGA single layer, ResNet-20 adder vs conv).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hw_cost  # noqa: E402


def conv_wl(op: str, cin: int, cout: int, hw: int, k: int = 3, stride: int = 1, bits: int = 8, name: str = "") -> dict:
    ho = max(1, hw // stride)
    pix = ho * ho
    return dict(name=name, op=op, ops=pix * cout * cin * k * k, w_bits=bits, a_bits=bits, params=cout * cin * k * k,
                in_elems=cin * hw * hw, out_elems=cout * pix, in_channels=cin, out_channels=cout, kernel=k * k, out_pixels=pix)


def random_resnet(rng: np.random.Generator) -> list[dict]:
    """A random ResNet-like workload list (3 stages, 2-4 blocks, random widths, ops and bits)."""
    op = rng.choice(["conv", "adder_conv", "binary_conv", "conv"])
    bits = 1 if op == "binary_conv" else int(rng.choice([4, 6, 8, 16]))
    hw, c = 32, int(rng.choice([8, 16, 24]))
    wl = [conv_wl("conv", 3, c, hw, bits=8, name="stem")]
    for s in range(3):
        cout = int(rng.choice([16, 24, 32, 48, 64])) * (2 ** s)
        for b in range(int(rng.integers(2, 5))):
            stride = 2 if (s > 0 and b == 0) else 1
            wl.append(conv_wl(op, c, cout, hw, stride=stride, bits=bits))
            hw = max(1, hw // stride)
            wl.append(dict(op="norm", ops=cout * hw * hw, a_bits=bits, w_bits=bits, in_elems=cout * hw * hw, out_elems=cout * hw * hw, fused=True))
            wl.append(conv_wl(op, cout, cout, hw, bits=bits))
            wl.append(dict(op="eltwise", ops=2 * cout * hw * hw, a_bits=bits, w_bits=bits, in_elems=2 * cout * hw * hw, out_elems=cout * hw * hw))
            c = cout
    wl.append(dict(op="pool", ops=c * hw * hw, a_bits=8, w_bits=8, in_elems=c * hw * hw, out_elems=c))
    wl.append(dict(op="linear", ops=c * 10, a_bits=8, w_bits=8, params=c * 10, in_elems=c, out_elems=10, in_channels=c,
                   out_channels=10, kernel=1, out_pixels=1))
    return wl


def resnet50():
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, mid: int, stride: int) -> None:
            super().__init__()
            cout = mid * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + idt)

    layers, cin = [], 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    batch = [random_resnet(rng) for _ in range(args.archs)]
    n_layers = sum(len(b) for b in batch)
    print(f"# hw_cost benchmark: {args.archs} random ResNet-like architectures, {n_layers / args.archs:.1f} layers each")
    for style in ("overlay", "dataflow"):
        best_d = best_a = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            arr, _, _ = hw_cost.workloads_to_array(batch)
            t1 = time.perf_counter()
            hw_cost.estimate_batch(arr, style=style, n_arch=args.archs)
            t2 = time.perf_counter()
            best_d, best_a = min(best_d, t2 - t0), min(best_a, t2 - t1)
        print(f"estimate_batch[{style}]  from dicts: {args.archs / best_d:,.0f} arch/s   from structured array: {args.archs / best_a:,.0f} arch/s")
    t0 = time.perf_counter()
    for wl in batch[:200]:
        hw_cost.estimate(wl, None)
    per = (time.perf_counter() - t0) / 200
    print(f"estimate (one architecture, with rows): {1 / per:,.0f} arch/s")

    try:
        import torch
    except ImportError:  # pragma: no cover
        print("torch not installed: ResNet-50 tracing skipped")
    else:
        torch.set_num_threads(2)
        m = resnet50()
        hw_cost.estimate(m, (1, 3, 64, 64))  # warm-up (allocator, kernels)
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            r = hw_cost.estimate(m, (1, 3, 224, 224))
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            m.eval()(torch.randn(1, 3, 224, 224))
        fwd = time.perf_counter() - t0
        print(f"ResNet-50 224x224 trace+estimate: {best:.3f} s (plain forward {fwd:.3f} s); {len(r.rows)} rows, "
              f"{r.ops / 1e9:.2f} GMAC-class ops, {len(r.uncosted)} uncosted; zcu104 overlay: {r.latency_ms:.2f} ms, "
              f"{r.energy_mj:.2f} mJ, LUT {r.lut:,.0f}, DSP {r.dsp:,.0f}")

    m_ = hw_cost.estimate([conv_wl("conv", 16, 16, 28)], None, pe_array=(16, 16), mult_impl="lut")
    a_ = hw_cost.estimate([conv_wl("adder_conv", 16, 16, 28)], None, pe_array=(16, 16), mult_impl="lut")
    print(f"AdderNet-FPGA layer (8 bit, 16x16 lanes): LUT mult {m_.lut:,.0f} (measured 20,493), adder {a_.lut:,.0f} "
          f"(measured 7,065), ratio {a_.lut / m_.lut:.3f} (measured 0.345)")


if __name__ == "__main__":
    main()
