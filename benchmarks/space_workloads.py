"""Throughput of the config-level cost path (architecture dict -> CostReport, no torch) vs tracing.

Run:  python benchmarks/space_workloads.py [--archs 10000] [--repeats 3] [--traced 20] [--spaces addernet-resnet fbnet]

For each space with a ``workloads_fn``, on the same sampled architectures (best of ``repeats``):
  * workloads:  ``space.workloads(arch, shape)`` (validation + the space's row writer);
  * to_array:   ``hw_cost.workloads_to_array`` (rows -> structured numpy table; read-only rows a
                writer shares between architectures are converted once);
  * reports:    ``hw_cost.estimate_reports`` on that table (numpy engine + one summary CostReport each);
  * end to end: the three together, architectures per second (target: >= 10,000 on an idle core);
  * the peer:   ``supernets.build`` + ``hw_cost.estimate`` (trace) per architecture, on ``--traced`` of
                them, and the ratio end-to-end / traced (the same machine, the same run).
Prints the load average: the machine these figures come from is shared; the end-to-end figure is
also given per second of process CPU time, which a loaded machine inflates far less than wall time.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hw_cost  # noqa: E402
import spaces  # noqa: E402

SHAPES = {"addernet-resnet": (1, 1, 8, 8), "fbnet": (1, 3, 32, 32)}


CPU: list[float] = []  # process CPU seconds of the last best_of (the work, whatever the machine's load)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out, cpu = float("inf"), None, float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    CPU.append(cpu)
    return best, out


def sample(sp, n: int) -> list[dict]:
    rng = random.Random(0)
    out = []
    while len(out) < n:
        a = sp.sample(rng)
        if sp.name == "addernet-resnet":
            a = sp.complete({**a, "manidp.enabled": False})   # dynamic nets are costed on measured data
        out.append(a)
    return out


def bench(name: str, n: int, repeats: int, traced: int, device: str) -> None:
    sp = spaces.get_space(name)
    shape = SHAPES.get(name, (1, 3, 32, 32))
    archs = sample(sp, n)
    t_wl, wls = best_of(lambda: [sp.workloads(x, shape) for x in archs], repeats)
    t_arr, (arr, _, _) = best_of(lambda: hw_cost.workloads_to_array(wls), repeats)
    t_rep, reps = best_of(lambda: hw_cost.estimate_reports(arr, device=device, n_arch=len(archs)), repeats)
    total = t_wl + t_arr + t_rep
    cpu = sum(CPU[-3:])
    print(f"{name}: {n} architectures at {shape}, {arr.size / n:.1f} rows/arch, device {device}")
    print(f"  workloads (space.workloads)       : {n / t_wl:12,.0f} arch/s")
    print(f"  workloads_to_array                : {n / t_arr:12,.0f} arch/s")
    print(f"  estimate_reports (engine+reports) : {n / t_rep:12,.0f} arch/s")
    print(f"  end to end (arch -> CostReport)   : {n / total:12,.0f} arch/s   torch imported: {'torch' in sys.modules}")
    print(f"  end to end per CPU second         : {n / cpu:12,.0f} arch/s   (process CPU time: the work, not the wait)")
    if traced:
        import supernets

        sub = archs[:traced]
        t0 = time.perf_counter()
        for a in sub:
            hw_cost.estimate(supernets.build(sp, a, input_shape=shape[1:]), shape, device=device)
        t_tr = (time.perf_counter() - t0) / len(sub)
        print(f"  peer: build + trace + estimate    : {1 / t_tr:12,.1f} arch/s   -> fast path x{t_tr * n / total:,.0f}")
    print(f"  mean latency {sum(r.latency_ms for r in reps) / len(reps):.4g} ms")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--traced", type=int, default=20, help="architectures costed by tracing, for the ratio (0: skip)")
    ap.add_argument("--spaces", nargs="+", default=list(SHAPES))
    ap.add_argument("--device", default="zcu104")
    a = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name in a.spaces:
        bench(name, a.archs, a.repeats, a.traced, a.device)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
