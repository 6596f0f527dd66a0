"""Candidates scored per second with inherited weights, against training each candidate.

Scores ``--candidates`` distinct architectures of ``addernet-resnet`` (optionally restricted with
``--ops``) on digits with the supernet's weights (batch-norm recalibration on ``--recal``
batches of 64, then the full validation split), in this process and as batched Ray tasks on
``--workers`` workers, the path ``abacus search`` takes in one-shot mode. The peer is what a
search without a supernet must do at the very least: build and train each candidate for one
epoch (``--peer`` of them). The supernet is untrained: scoring costs the same either way.

    python benchmarks/oneshot_speed.py --candidates 96 --workers 2 --ops conv,adder,binary --widths 0.25,0.5 --max-blocks 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-task", type=int, default=16)
    ap.add_argument("--recal", type=int, default=2)
    ap.add_argument("--ops", default="")
    ap.add_argument("--peer", type=int, default=3)
    ap.add_argument("--widths", default="", help="comma-separated width multipliers (examples/oneshot.yaml: 0.25,0.5)")
    ap.add_argument("--max-blocks", type=int, default=3)
    args = ap.parse_args()

    import torch

    import evaluators
    import supernets
    from evaluators.supernet import META_FILE, fixed_batches, save_supernet, score_inherited
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
    rng = random.Random(0)
    archs, seen = [], set()
    while len(archs) < args.candidates:
        a = {k: v for k, v in space.sample(rng).items() if k.startswith("stage")}
        key = json.dumps(a, sort_keys=True)
        if key not in seen:
            seen.add(key)
            archs.append(a)
    load0 = os.getloadavg()[0]
    sn = supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10)
    dm = evaluators.get_datamodule("digits", batch_size=64)
    recal, val = fixed_batches(dm, args.recal)

    n_local = max(1, args.candidates // 3)
    t = time.perf_counter()
    for a in archs[:n_local]:
        score_inherited(sn, a, recal, val)
    local_rate = n_local / (time.perf_counter() - t)

    import tempfile

    import ray

    from search.oneshot import _payload, score_candidates

    with tempfile.TemporaryDirectory() as d:
        save_supernet(sn, d)
        assert os.path.isfile(os.path.join(d, META_FILE))
        payload = _payload(__import__("pathlib").Path(d))
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = ray.remote(score_candidates).options(num_cpus=1)
    ref = ray.put(payload)
    data = {"data": "digits", "data_kwargs": {}, "batch_size": 64, "seed": 0, "recalibration_batches": args.recal}
    ray.get([remote.remote(ref, data, [(0, archs[0])]) for _ in range(args.workers)])  # warm workers (load + cache)
    t = time.perf_counter()
    items = list(enumerate(archs))
    refs = [remote.remote(ref, data, items[i:i + args.per_task]) for i in range(0, len(items), args.per_task)]
    results = [r for batch in ray.get(refs) for r in batch]
    ray_rate = len(results) / (time.perf_counter() - t)
    assert all(r.state == "complete" for r in results), [r.reason for r in results if r.state != "complete"][:3]
    ray.shutdown()

    t = time.perf_counter()
    for a in archs[: args.peer]:
        full = space.validate(space.complete(a))
        model = supernets.build(space, full, input_shape=(1, 8, 8), num_classes=10)
        evaluators.evaluate(model, datamodule=dm, epochs=1)
    peer_rate = args.peer / (time.perf_counter() - t)
    load1 = os.getloadavg()[0]
    print(f"ops={args.ops or 'all'} widths={args.widths or 'all'} max_blocks={args.max_blocks} recal={args.recal}x64 val={sum(len(y) for _, y in val)} images")
    print(f"inherited, in-process (1 thread):   {local_rate:6.2f} candidates/s ({n_local} candidates)")
    print(f"inherited, Ray x{args.workers} ({args.per_task}/task):     {ray_rate:6.2f} candidates/s ({len(results)} candidates)")
    print(f"peer: build + train 1 epoch:        {peer_rate:6.3f} candidates/s ({args.peer} candidates)")
    print(f"ratio Ray inherited / peer: {ray_rate / peer_rate:.0f}x; loadavg {load0:.2f} -> {load1:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
