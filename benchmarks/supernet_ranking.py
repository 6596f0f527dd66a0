"""Does the supernet rank? Kendall tau between inherited-weight and stand-alone accuracy.

For ``--archs`` architectures sampled across ``addernet-resnet`` (optionally restricted with
``--ops``), each is trained stand-alone for ``--epochs`` epochs (``evaluators.evaluate``, the
same training a search trial gets) and scored with inherited weights from a supernet trained for
the same number of epochs with each sampler (uniform, strict-fair, sandwich), after batch-norm
recalibration on ``--recal`` training batches (only the statistics modules of the path in
training mode). Prints one line per sampler and writes JSON.

The stand-alone accuracies (the ground truth, the expensive part) are kept in
``--standalone-cache`` and reused by later runs with the same architectures and epochs, so
supernet settings (``--supernet-epochs``, ``--recal``, ``--lr``, samplers) can be compared
against one ground truth.

    python benchmarks/supernet_ranking.py --archs 24 --epochs 4 --out /tmp/issue-11/ranking.json \
        --standalone-cache /tmp/issue-11/standalone.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ARCH_PREFIX = "stage"


def _space(narrow: dict | None):
    """``addernet-resnet`` restricted to ``narrow`` (label -> allowed values), e.g. the op families."""
    from spaces import get_space

    space = get_space("addernet-resnet")
    return space.restricted(narrow) if narrow else space


def _narrow(ops: list[str], widths: list[float], max_blocks: int) -> dict:
    out: dict = {}
    for s in (1, 2, 3):
        if ops:
            out[f"stage{s}.op"] = ops
        if widths:
            out[f"stage{s}.width"] = widths
        if max_blocks:
            out[f"stage{s}.blocks"] = [1, max_blocks]
    return out


def _archs(space, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        a = {k: v for k, v in space.sample(rng).items() if k.startswith(ARCH_PREFIX)}
        key = json.dumps(a, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def _standalone(args: tuple) -> dict:
    arch, ops, epochs, seed = args
    import torch

    import evaluators
    import supernets

    torch.set_num_threads(1)
    space = _space(ops)
    full = space.validate(space.complete({**arch, "manidp.enabled": False}))
    torch.manual_seed(seed)
    model = supernets.build(space, full, input_shape=(1, 8, 8), num_classes=10)
    res = evaluators.evaluate(model, data="digits", epochs=epochs, seed=seed)
    return {"arch": arch, "val_accuracy": res["val_accuracy"], "wall_time_s": res["wall_time_s"]}


def _supernet(args: tuple) -> dict:
    sampling, archs, ops, epochs, recal_n, seed, lr, ablate = args
    import torch

    import evaluators
    import supernets
    from evaluators.supernet import fixed_batches, score_inherited, train_supernet

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    space = _space(ops)
    dm = evaluators.get_datamodule("digits", batch_size=64)
    sn = supernets.build_supernet(space, input_shape=(1, 8, 8), num_classes=10, fixed={"manidp.enabled": False})
    train = train_supernet(sn, datamodule=dm, sampling=sampling, epochs=epochs, seed=seed, lr=lr)
    out = []
    for n in recal_n:  # the same trained supernet scored with each recalibration size (and, with ablate, each mode)
        recal, val = fixed_batches(dm, n, seed=seed)
        variants = {"": lambda a: score_inherited(sn, a, recal, val)}
        if ablate:
            variants["one-chunk"] = lambda a: score_inherited(sn, a, [torch.cat(recal)], val)
            variants["all-train"] = lambda a: _score_all_train(sn, a, recal, val)
        for mode, fn in variants.items():
            t = time.perf_counter()
            scores = [fn(a)["val_accuracy"] for a in archs]
            out.append({"sampling": sampling, "recal": n, "mode": mode or "path", "inherited": scores, "train_wall_s": train["wall_time_s"],
                        "score_wall_s": time.perf_counter() - t, "steps": train["steps"]})
    return out


def _score_all_train(sn, arch, batches, val) -> dict:
    """Ablation: the first version's recalibration (every module of the supernet in training
    mode, not only the active path's statistics modules), then the same evaluation."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        sn.set_active(arch)
        bns = [m for m in sn.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        for name, buf in sn.named_buffers():
            if name.endswith("act_absmax"):
                buf.zero_()
        sn.train()
        for x in batches:
            sn(x)
        for m in bns:
            m.momentum = 0.1
        sn.eval()
        correct = sum(int((sn(x).argmax(1) == y).sum()) for x, y in val)
    return {"val_accuracy": correct / sum(len(y) for _, y in val)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--supernet-epochs", type=int, default=0, help="supernet epochs (default: --epochs, the stand-alone epochs)")
    ap.add_argument("--lr", type=float, default=0.05, help="supernet learning rate (stand-alone: evaluate's default 0.05)")
    ap.add_argument("--standalone-cache", default="", help="JSON of stand-alone results, reused when archs and epochs match")
    ap.add_argument("--recal", default="2,10", help="batch-norm recalibration batches of 64 per sub-network (comma list: each is scored)")
    ap.add_argument("--ops", default="", help="comma-separated op families (default: all of the space)")
    ap.add_argument("--widths", default="", help="comma-separated width multipliers (default: all of the space)")
    ap.add_argument("--max-blocks", type=int, default=0, help="blocks per stage 1..N (default: all of the space)")
    ap.add_argument("--samplers", default="uniform,strict-fair,sandwich")
    ap.add_argument("--ablate-recal", action="store_true", help="also score with the recalibration batches in one forward, and with every module in training mode")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from scipy.stats import kendalltau, spearmanr

    ops = _narrow([o for o in args.ops.split(",") if o], [float(w) for w in args.widths.split(",") if w], args.max_blocks) or None
    archs = _archs(_space(ops), args.archs, args.seed)
    start = time.perf_counter()
    load0 = os.getloadavg()
    sn_epochs = args.supernet_epochs or args.epochs
    recal = [int(r) for r in str(args.recal).split(",") if r]
    jobs_sn = [(s, archs, ops, sn_epochs, recal, args.seed, args.lr, args.ablate_recal) for s in args.samplers.split(",") if s]
    cache = Path(args.standalone_cache) if args.standalone_cache else None
    standalone = None
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("archs") == archs and saved.get("epochs") == args.epochs:
            standalone = saved["standalone"]
    jobs_sa = [(a, ops, args.epochs, args.seed + 1) for a in archs] if standalone is None else []
    with ProcessPoolExecutor(args.procs) as pool:
        fut_sn = [pool.submit(_supernet, j) for j in jobs_sn]
        if standalone is None:
            standalone = list(pool.map(_standalone, jobs_sa))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"archs": archs, "epochs": args.epochs, "standalone": standalone}, indent=2))
        sn_results = [row for f in fut_sn for row in f.result()]
    truth = [r["val_accuracy"] for r in standalone]
    rows = []
    for r in sn_results:
        tau = kendalltau(r["inherited"], truth).statistic
        rho = spearmanr(r["inherited"], truth).statistic
        rows.append({**r, "kendall_tau": float(tau), "spearman_rho": float(rho)})
        print(f"{r['sampling']:12s} recal={r['recal']:<3d} {r['mode']:9s} kendall_tau={tau:+.3f} spearman={rho:+.3f} supernet_train={r['train_wall_s']:.0f}s "
              f"scoring={r['score_wall_s']:.1f}s mean_inherited_acc={sum(r['inherited']) / len(archs):.3f}")
    print(f"stand-alone: mean acc {sum(truth) / len(truth):.3f} (min {min(truth):.3f}, max {max(truth):.3f}); "
          f"{len(archs)} archs, {args.epochs} stand-alone / {sn_epochs} supernet epochs; total {time.perf_counter() - start:.0f}s; "
          f"loadavg start {load0[0]:.2f} end {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "archs": archs, "standalone": standalone, "supernets": rows,
                                              "loadavg_start": load0, "loadavg_end": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
