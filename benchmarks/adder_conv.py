"""AdderConv2d vs nn.Conv2d (and the official unfold-broadcast layer) on ResNet-20 CIFAR shapes.

Usage: ``python benchmarks/adder_conv.py [--reps 15] [--threads N] [--skip-naive]``

Every ratio is measured in one run with the two contenders interleaved (ours, theirs, ours,
...); the table reports min(ours) / min(theirs) over those runs: on a shared machine the fastest
run of each is the least disturbed by other processes, and interleaving exposes both to the
same load phases.  Peak memory is the peak of torch's CPU allocator during
one forward+backward (profiler memory trace), ours / conv2d.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supernets.ops.adder import adder_conv2d, native_kernel_available  # noqa: E402

SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, pixels): ResNet-20 stages
BATCHES = [32, 128]


class _NaiveAdder(torch.autograd.Function):
    """The official layer (huawei-noah/AdderNet adder.py semantics): full broadcast temporaries."""

    @staticmethod
    def forward(ctx, x, w):
        N, C, H, W = x.shape
        cols = F.unfold(x, 3, padding=1)  # N, C*9, L
        wc = w.view(w.shape[0], -1)
        ctx.save_for_backward(cols, wc)
        ctx.shape = x.shape
        y = -(wc[None, :, :, None] - cols[:, None]).abs().sum(2)
        return y.view(N, -1, H, W)

    @staticmethod
    def backward(ctx, g):
        cols, wc = ctx.saved_tensors
        N, C, H, W = ctx.shape
        gg = g.reshape(N, g.shape[1], 1, -1)
        diff = cols[:, None] - wc[None, :, :, None]
        gw = (diff * gg).sum(dim=(0, 3))
        gx = ((-diff).clamp(-1, 1) * gg).sum(1)
        return F.fold(gx, (H, W), 3, padding=1), gw.view(-1, C, 3, 3)


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ratio(fa, fb, reps: int) -> float:
    """min time(fa) / min time(fb) over ``reps`` interleaved runs (after one warm-up each)."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(reps):
        ta.append(_time(fa))
        tb.append(_time(fb))
    return min(ta) / min(tb)


def peak_cpu_bytes(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            ev = [e["args"] for e in json.load(fh)["traceEvents"] if e.get("name") == "[memory]"]
    ev = [a for a in ev if a.get("Device Type", 0) == 0]
    if not ev:
        return 0
    start = ev[0]["Total Allocated"] - ev[0]["Bytes"]
    return max(a["Total Allocated"] for a in ev) - start


def run(reps: int, skip_naive: bool, naive_max_gib: float) -> list[dict]:
    rows = []
    for B in BATCHES:
        for C, HW in SHAPES:
            torch.manual_seed(0)
            x = torch.randn(B, C, HW, HW)
            w = torch.randn(C, C, 3, 3)
            g = torch.randn(B, C, HW, HW)
            xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

            def ours_f():
                with torch.no_grad():
                    adder_conv2d(x, w, None, 1, 1)

            def conv_f():
                with torch.no_grad():
                    F.conv2d(x, w, None, 1, 1)

            def ours_fb():
                xg.grad = wg.grad = None
                adder_conv2d(xg, wg, None, 1, 1).backward(g)

            def conv_fb():
                xg.grad = wg.grad = None
                F.conv2d(xg, wg, None, 1, 1).backward(g)

            def naive_fb():
                xg.grad = wg.grad = None
                _NaiveAdder.apply(xg, wg).backward(g)

            row = {"batch": B, "C": C, "HW": HW,
                   "fwd": ratio(ours_f, conv_f, reps), "fwd_bwd": ratio(ours_fb, conv_fb, reps)}
            naive_gib = 3 * C * C * 9 * B * HW * HW * 4 / 2**30
            if skip_naive or naive_gib > naive_max_gib:
                row["naive"] = None
            else:
                row["naive"] = ratio(ours_fb, naive_fb, max(3, reps // 5))
            pm_ours, pm_conv = peak_cpu_bytes(ours_fb), peak_cpu_bytes(conv_fb)
            row["mem"] = pm_ours / max(pm_conv, 1)
            row["mem_ours_mib"], row["mem_conv_mib"] = pm_ours / 2**20, pm_conv / 2**20
            rows.append(row)
            naive = "   skip" if row["naive"] is None else f"{row['naive']:7.3f}"
            print(f"{B:5d} {C:3d} {HW:3d}x{HW:<3d} {row['fwd']:8.2f} {row['fwd_bwd']:8.2f} {naive} "
                  f"{row['mem']:7.2f} ({row['mem_ours_mib']:.1f} / {row['mem_conv_mib']:.1f} MiB)", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15, help="interleaved pairs per ratio")
    ap.add_argument("--threads", type=int, default=None, help="torch/kernel threads (default: torch's)")
    ap.add_argument("--skip-naive", action="store_true", help="skip the official unfold-broadcast layer")
    ap.add_argument("--naive-max-gib", type=float, default=6.0,
                    help="skip the naive layer where its temporaries would exceed this")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, native kernel: {native_kernel_available()}")
    print("ratios are ours / theirs (min over interleaved runs); 3x3, stride 1, pad 1")
    print("batch   C  pixels  fwd/conv  f+b/conv f+b/naive mem/conv")
    rows = run(args.reps, args.skip_naive, args.naive_max_gib)
    med = lambda k: statistics.median(r[k] for r in rows if r[k] is not None)  # noqa: E731
    naive = [r["naive"] for r in rows if r["naive"] is not None]
    print(f"median             {med('fwd'):8.2f} {med('fwd_bwd'):8.2f} "
          f"{(statistics.median(naive) if naive else float('nan')):7.3f} {med('mem'):7.2f}")
    print("targets: fwd <= 2x conv, fwd+bwd <= 3x conv, peak memory <= 2x conv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
