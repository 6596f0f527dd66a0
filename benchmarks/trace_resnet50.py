"""Tracing + costing a ResNet-50 at 224 x 224 (``hw_cost.estimate`` on an ``nn.Module``).

Run:  python benchmarks/trace_resnet50.py [--repeats 3]

The network is a standard ResNet-50 (He et al. 2016: bottleneck blocks [3, 4, 6, 3], 161 modules)
written here with plain torch layers (torchvision is not a dependency). Timed, best of ``repeats``:
  * forward:       one plain ``model(x)`` at the torch thread count the tracer uses (1);
  * trace:         ``hw_cost.trace_workloads`` (the forward plus the global hooks and function mode);
  * trace + cost:  ``hw_cost.estimate(model, (1, 3, 224, 224))`` (target: < 1 s);
and the ratio trace / forward (the tracer's own overhead). Prints the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import hw_cost  # noqa: E402


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = 4 * mid
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


def resnet50(num_classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = 4 * mid
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    model = resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        t_fwd = best_of(lambda: model(x), a.repeats)
    torch.set_num_threads(threads)
    t_tr = best_of(lambda: hw_cost.trace_workloads(model, (1, 3, 224, 224)), a.repeats)
    t_est = best_of(lambda: hw_cost.estimate(model, (1, 3, 224, 224), device="zcu104"), a.repeats)
    rep = hw_cost.estimate(model, (1, 3, 224, 224), device="zcu104")
    n_mod = sum(1 for _ in model.modules())
    print(f"ResNet-50 at 224x224 ({n_mod} modules, {len(rep.rows)} rows, {rep.ops / 1e9:.2f} G primitive ops, uncosted {rep.uncosted})")
    print(f"  forward (1 thread)   : {t_fwd * 1e3:8.1f} ms")
    print(f"  trace_workloads      : {t_tr * 1e3:8.1f} ms   (x{t_tr / t_fwd:.2f} the plain forward)")
    print(f"  estimate (trace+cost): {t_est * 1e3:8.1f} ms   target < 1000 ms")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
