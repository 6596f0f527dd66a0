"""Throughput of the config-level cost path of ``addernet-resnet`` (no torch): architectures / s.

Run:  python benchmarks/space_workloads.py [--archs 10000] [--repeats 3] [--shape 1 1 8 8]

Stages, timed separately on the same sampled architectures (best of ``repeats``):
  * workloads: ``space.workloads(arch, shape)`` (validation + the pure-Python row writer);
  * to_array:  ``hw_cost.workloads_to_array`` (dicts -> structured numpy table);
  * estimate:  ``hw_cost.estimate_batch`` on that table (the numpy engine);
  * end to end: the three together (the >= 10,000 arch/s target of the config-level fast path).
Also reports whether torch was imported (it must not be).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hw_cost  # noqa: E402
import spaces  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=4, default=(1, 1, 8, 8))
    ap.add_argument("--device", default="zcu104")
    a = ap.parse_args(argv)
    sp = spaces.get_space("addernet-resnet")
    shape = tuple(a.shape)
    archs = [sp.complete({**sp.sample(i), "manidp.enabled": False}) for i in range(a.archs)]

    t_wl, wls = best_of(lambda: [sp.workloads(x, shape) for x in archs], a.repeats)
    t_arr, (arr, _, _) = best_of(lambda: hw_cost.workloads_to_array(wls), a.repeats)
    t_est, res = best_of(lambda: hw_cost.estimate_batch(arr, device=a.device, n_arch=len(archs)), a.repeats)
    total = t_wl + t_arr + t_est
    n = len(archs)
    print(f"addernet-resnet config-level cost path, {n} architectures at {shape}, {arr.size / n:.1f} rows/arch, device {a.device}")
    print(f"  workloads (space.workloads)     : {n / t_wl:12,.0f} arch/s  ({t_wl * 1e3:8.1f} ms)")
    print(f"  workloads_to_array              : {n / t_arr:12,.0f} arch/s  ({t_arr * 1e3:8.1f} ms)")
    print(f"  estimate_batch (array)          : {n / t_est:12,.0f} arch/s  ({t_est * 1e3:8.1f} ms)")
    print(f"  end to end (config -> estimate) : {n / total:12,.0f} arch/s  ({total * 1e3:8.1f} ms)")
    print(f"  mean energy {res['energy_mj'].mean():.4g} mJ, mean latency {res['latency_ms'].mean():.4g} ms")
    print(f"  torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
