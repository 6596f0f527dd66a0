"""Candidates scored per second with inherited weights, against training each candidate.

Scores ``--candidates`` distinct architectures of ``addernet-resnet`` (optionally restricted with
``--ops`` / ``--widths`` / ``--max-blocks``) on digits with a supernet's weights (batch-norm
recalibration on ``--recal`` batches of 64, then the full validation split, plus the path's
params/macs as a trained candidate reports them):

* in this process, one thread (one :class:`search.oneshot.SupernetScorer`);
* through :class:`search.oneshot.InheritedExecutor` on ``--workers`` long-lived Ray actors,
  ``--per-task`` candidates per call: the path ``abacus search`` takes in one-shot mode (actor
  start-up, which loads the supernet and the data once, is timed separately).

The peer is what a search without a supernet must do at the very least: build and train each
candidate for one epoch (``--peer`` of them). The supernet is untrained: scoring costs the same
either way. Prints wall and CPU time and the load average.

    python benchmarks/oneshot_speed.py --candidates 240 --workers 2 --ops conv,adder,binary --widths 0.25,0.5 --max-blocks 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def _archs(space, n: int) -> list[dict]:
    rng = random.Random(0)
    archs, seen = [], set()
    while len(archs) < n:
        a = {k: v for k, v in space.sample(rng).items() if k.startswith("stage")}
        key = json.dumps(a, sort_keys=True)
        if key not in seen:
            seen.add(key)
            archs.append(a)
    return archs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=240)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-task", type=int, default=16)
    ap.add_argument("--recal", type=int, default=2)
    ap.add_argument("--ops", default="")
    ap.add_argument("--peer", type=int, default=2)
    ap.add_argument("--widths", default="", help="comma-separated width multipliers (examples/oneshot.yaml: 0.25,0.5)")
    ap.add_argument("--max-blocks", type=int, default=3)
    args = ap.parse_args()

    import torch

    import evaluators
    import supernets
    from evaluators.supernet import save_supernet
    from search.oneshot import InheritedExecutor, SupernetScorer, supernet_payload
    from spaces import get_space

    torch.set_num_threads(1)
    ops = [o for o in args.ops.split(",") if o]
    space = get_space("addernet-resnet")
    narrow: dict = {f"stage{s}.blocks": [1, args.max_blocks] for s in (1, 2, 3)}
    if ops:
        narrow.update({f"stage{s}.op": ops for s in (1, 2, 3)})
    if args.widths:
        narrow.update({f"stage{s}.width": [float(w) for w in args.widths.split(",")] for s in (1, 2, 3)})
    space = space.restricted(narrow)
    archs = _archs(space, args.candidates)
    load0 = os.getloadavg()[0]
    sn = supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10)
    data = {"data": "digits", "data_kwargs": {}, "batch_size": 64, "seed": 0, "recalibration_batches": args.recal}
    with tempfile.TemporaryDirectory() as d:
        save_supernet(sn, d)
        # in this process: one scorer (the supernet and batches loaded once)
        scorer = SupernetScorer(supernet_payload(Path(d)), data, threads=1)
        n_local = max(1, args.candidates // 4)
        w, c = time.perf_counter(), time.process_time()
        local = scorer.score(list(enumerate(archs[:n_local])))
        local_wall, local_cpu = time.perf_counter() - w, time.process_time() - c
        assert all(r.state == "complete" for r in local), [r.reason for r in local if r.state != "complete"][:3]
        val_images = sum(len(y) for _, y in scorer.val)

        # Ray actors: the one-shot search's executor
        w = time.perf_counter()
        ex = InheritedExecutor(Path(d), data, workers=args.workers, candidates_per_task=args.per_task)
        import ray

        ray.get([a.ping.remote() for a in ex._actors])  # actors up: supernet and batches loaded
        start_s = time.perf_counter() - w
        w, c = time.perf_counter(), time.process_time()
        for i, a in enumerate(archs):
            ex.submit(SimpleNamespace(number=i, arch=a))
        results = [ex.wait_one() for _ in archs]
        ray_wall, driver_cpu = time.perf_counter() - w, time.process_time() - c
        ex.shutdown()
    assert all(r.state == "complete" for r in results), [r.reason for r in results if r.state != "complete"][:3]
    assert all("params" in r.metrics and "macs" in r.metrics for r in results)
    worker_s = sum(r.worker_time_s for r in results)

    dm = evaluators.get_datamodule("digits", batch_size=64)
    w = time.perf_counter()
    for a in archs[: args.peer]:
        full = space.validate(space.complete(a))
        model = supernets.build(space, full, input_shape=(1, 8, 8), num_classes=10)
        evaluators.evaluate(model, datamodule=dm, epochs=1)
    peer_rate = args.peer / (time.perf_counter() - w)
    load1 = os.getloadavg()[0]
    ray_rate = len(results) / ray_wall
    print(f"ops={args.ops or 'all'} widths={args.widths or 'all'} max_blocks={args.max_blocks} recal={args.recal}x64 val={val_images} images")
    print(f"inherited, in-process (1 thread):     {n_local / local_wall:6.2f} candidates/s ({n_local} candidates, "
          f"{1000 * local_cpu / n_local:.0f} ms CPU / {1000 * local_wall / n_local:.0f} ms wall each)")
    print(f"inherited, {args.workers} Ray actors ({args.per_task}/call): {ray_rate:6.2f} candidates/s ({len(results)} candidates; "
          f"{1000 * worker_s / len(results):.0f} ms in a worker each; driver CPU {driver_cpu:.1f} s; actor start {start_s:.1f} s)")
    print(f"peer: build + train 1 epoch:          {peer_rate:6.3f} candidates/s ({args.peer} candidates)")
    print(f"ratio Ray inherited / peer: {ray_rate / peer_rate:.0f}x; loadavg {load0:.2f} -> {load1:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
