"""Throughput of the config-level cost path (architecture dict -> CostReport, no torch) vs tracing.

Run:  python benchmarks/space_workloads.py [--archs 10000] [--repeats 3] [--traced 20] [--spaces NAME ...]
      (default: every built-in space: addernet-resnet fbnet tnt edsr-fadn detector gan-generator
      gan-generator-sr)

For each space with a ``workloads_fn``, on the same sampled architectures (best of ``repeats``),
two paths from architecture dicts to summary ``CostReport``s, with identical numbers:
  * batch path: ``space.workload_blocks`` (validation + the space's cached row blocks),
                ``hw_cost.blocks_to_array`` (one index over distinct rows, no per-row Python) and
                ``hw_cost.estimate_reports`` on that ``WorkloadBatch`` (per-row terms once per
                distinct row); target >= 10,000 architectures/s on an idle core;
  * per-arch path (the previous one): ``space.workloads`` per architecture, ``workloads_to_array``,
                ``estimate_reports`` on the structured array; the ratio batch / per-arch;
  * one call:   ``search.cost_inputs.cost_reports`` (what the search's cost model, ``abacus cost`` and
                exports call), the three steps above in one function;
  * the peer:   ``supernets.build`` + ``hw_cost.estimate`` (trace) per architecture, on ``--traced`` of
                them, and the ratio end-to-end / traced (the same machine, the same run).
Prints the load average: the machine these figures come from is shared; the end-to-end figure is
also given per second of process CPU time, which a loaded machine inflates far less than wall time.
Best of ``repeats`` is the steady state (the same architectures again: the space's row blocks and
hw_cost's converted rows cached); the first pass, where every row is converted once, is printed
too, and a pass over as many other architectures with the caches warm (a long search: new
architectures, rows partly seen).
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

SHAPES = {"addernet-resnet": (1, 1, 8, 8), "fbnet": (1, 3, 32, 32), "tnt": (1, 1, 8, 8), "edsr-fadn": (1, 3, 24, 24),
          "detector": (1, 1, 64, 64), "gan-generator": (1, 3, 32, 32), "gan-generator-sr": (1, 3, 24, 24)}
DYNAMIC = ("manidp.enabled", "fadn.enabled")  # data-dependent networks are costed on measured data (traced)


CPU: list[float] = []  # process CPU seconds of the last best_of (the work, whatever the machine's load)


FIRST: list[float] = []  # CPU seconds of the first repetition (caches of rows and blocks still empty)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out, cpu = float("inf"), None, float("inf")
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        if r == 0:
            FIRST.append(time.process_time() - c)
    CPU.append(cpu)
    return best, out


def sample(sp, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        a = sp.sample(rng)
        a = sp.complete({**a, **{k: False for k in DYNAMIC if k in a}})
        out.append(a)
    return out


def bench(name: str, n: int, repeats: int, traced: int, device: str) -> None:
    sp = spaces.get_space(name)
    shape = SHAPES.get(name, (1, 3, 32, 32))
    archs = sample(sp, n)
    # the batch path: blocks straight from the space, one index table, the engine on distinct rows
    t_bl, blocks = best_of(lambda: sp.workload_blocks(archs, shape), repeats)
    t_ix, wb = best_of(lambda: hw_cost.blocks_to_array(blocks), repeats)
    t_rp, reps = best_of(lambda: hw_cost.estimate_reports(wb, device=device), repeats)
    fast, fast_cpu, cold_cpu = t_bl + t_ix + t_rp, sum(CPU[-3:]), sum(FIRST[-3:])
    # a long search: architectures never costed before, the caches warm from the ones above
    fresh = sample(sp, n, seed=1)
    c0 = time.process_time()
    hw_cost.estimate_reports(hw_cost.blocks_to_array(sp.workload_blocks(fresh, shape)), device=device)
    new_cpu = time.process_time() - c0
    # the same, as the search, `abacus cost` and exports call it: one call (search.cost_inputs.cost_reports)
    from search.cost_inputs import cost_reports

    t_one, _ = best_of(lambda: cost_reports(sp, archs, shape[1:], {"device": device}), repeats)
    one_cpu = CPU[-1]
    # the per-architecture path: row lists, a structured array, the engine on every row
    t_wl, wls = best_of(lambda: [sp.workloads(x, shape) for x in archs], repeats)
    t_arr, (arr, _, _) = best_of(lambda: hw_cost.workloads_to_array(wls), repeats)
    t_rep, old = best_of(lambda: hw_cost.estimate_reports(arr, device=device, n_arch=len(archs)), repeats)
    total, cpu = t_wl + t_arr + t_rep, sum(CPU[-3:])
    same = all(repr(a.to_dict()) == repr(b.to_dict()) for a, b in zip(reps, old))
    print(f"{name}: {n} architectures at {shape}, {wb.idx.size / n:.1f} rows/arch ({wb.table.size} distinct), device {device}")
    print(f"  batch path: workload_blocks     : {n / t_bl:12,.0f} arch/s")
    print(f"              blocks_to_array     : {n / t_ix:12,.0f} arch/s")
    print(f"              estimate_reports    : {n / t_rp:12,.0f} arch/s")
    print(f"    end to end (arch -> CostReport): {n / fast:12,.0f} arch/s wall, {n / fast_cpu:10,.0f} per CPU second"
          f"   (load average {os.getloadavg()[0]:.1f})")
    print(f"      first pass, every row new to the caches: {n / cold_cpu:10,.0f} per CPU second")
    print(f"      then {n:,} other architectures, caches warm: {n / new_cpu:10,.0f} per CPU second")
    print(f"    one call, search.cost_inputs.cost_reports: {n / t_one:8,.0f} arch/s wall, {n / one_cpu:10,.0f} per CPU second")
    print(f"  per-arch path: workloads        : {n / t_wl:12,.0f} arch/s")
    print(f"              workloads_to_array  : {n / t_arr:12,.0f} arch/s")
    print(f"              estimate_reports    : {n / t_rep:12,.0f} arch/s")
    print(f"    end to end (arch -> CostReport): {n / total:12,.0f} arch/s wall, {n / cpu:10,.0f} per CPU second")
    print(f"  batch / per-arch path: x{total / fast:.2f} wall, x{cpu / fast_cpu:.2f} CPU; same reports: {same}")
    if traced:
        import supernets

        sub = archs[:traced]
        t0 = time.perf_counter()
        for a in sub:
            hw_cost.estimate(supernets.build(sp, a, input_shape=shape[1:]), shape, device=device)
        t_tr = (time.perf_counter() - t0) / len(sub)
        print(f"  peer: build + trace + estimate    : {1 / t_tr:12,.1f} arch/s   -> batch path x{t_tr * n / fast:,.0f}")
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
