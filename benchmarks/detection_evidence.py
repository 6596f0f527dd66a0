"""Detection evidence: no distillation vs FitNet vs DeFeat (same student, same budget), and a
cheaper-op student distilled from the float conv teacher; mAP against FPGA energy.

Usage::

    python benchmarks/detection_evidence.py --teacher DIR [--seeds 0 1 2] [--epochs 8]
        [--train-images 512] [--val-images 128] [--out docs/detection_results.jsonl] [--only GROUP ...]

Every run: the ``detector`` space's ``student`` preset (or its 8-bit adder backbone variant),
built with ``supernets.build``, trained with ``evaluators.evaluate`` on ``digits-detection`` (the
data split and canvases fixed by data seed 0; ``--seeds`` are training seeds), Adam lr 2e-3
(``--optimizer``/``--lr``; the same for every run), wd 1e-4, cosine, batch 16, gradient clip 35; DeFeat/FitNet weights at the release's
defaults (alpha_obj 3, alpha_bg 12, beta 2/2, T 1/1, conv3x3 adapter, constant schedule). The
teacher is the exported directory ``--teacher`` (``python -m evaluators.detection.teacher``).
Cost: ``hw_cost.estimate(model, (1, 1, 64, 64), device="zcu104")`` of the student.
One JSON line per run is appended to ``--out`` as it finishes; runs already there are skipped.

Groups: ``methods`` (conv student: none / fitnet / defeat, every seed), ``cheap_ops`` (8-bit adder
and 8-bit conv backbones of the same student: none / defeat, every seed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

VARIANTS = {
    "methods": [("conv-none", "student", "none"), ("conv-fitnet", "student", "fitnet"), ("conv-defeat", "student", "defeat")],
    "cheap_ops": [("adder8-none", "student-adder8-defeat", "none"), ("adder8-defeat", "student-adder8-defeat", "defeat"),
                  ("conv8-none", "student", "none"), ("conv8-defeat", "student", "defeat")],
}
# backbone changes on top of the preset (conv8: the conv student with 8-bit backbone stages)
OVERRIDES = {name: {f"stage{i}.bits": 8 for i in (1, 2, 3)} for name in ("conv8-none", "conv8-defeat")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-images", type=int, default=512)
    ap.add_argument("--val-images", type=int, default=128)
    ap.add_argument("--out", default="docs/detection_results.jsonl")
    ap.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=None, help="run only these variant names (e.g. conv-none)")
    ap.add_argument("--optimizer", default="adam", choices=("sgd", "adam", "adamw"))
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()

    import torch

    import evaluators
    import hw_cost
    import supernets
    from evaluators.detection import load_teacher
    from spaces import get_space

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["variant"], r["seed"], r["epochs"], r.get("train_images", 256)))
    space = get_space("detector")
    teacher = None  # loaded on first use: the runs without distillation can start before the teacher exists
    for seed in args.seeds:
        for group in args.only:
            for name, preset, method in VARIANTS[group]:
                if (name, seed, args.epochs, args.train_images) in done or (args.variants and name not in args.variants):
                    continue
                arch = space.complete({**space.preset(preset), **OVERRIDES.get(name, {}), "defeat.method": method})
                if method != "none" and teacher is None:
                    teacher = load_teacher(args.teacher)
                    print("teacher", args.teacher, json.loads((Path(args.teacher) / "teacher.json").read_text())["metrics"], flush=True)
                torch.manual_seed(seed)
                model = supernets.build(space, arch, input_shape=(1, 64, 64), num_classes=10)
                dm = evaluators.get_datamodule("digits-detection", train_images=args.train_images, val_images=args.val_images,
                                               seed=0, batch_size=16)
                t0 = time.time()
                m = evaluators.evaluate(model, datamodule=dm, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, weight_decay=1e-4, seed=seed,
                                        **({"teacher": teacher} if method != "none" else {}))
                cost = hw_cost.estimate(model, (1, 1, 64, 64), device="zcu104")
                rec = {"variant": name, "group": group, "seed": seed, "epochs": args.epochs, "train_images": args.train_images, "optimizer": args.optimizer, "lr": args.lr,
                       "teacher": args.teacher if method != "none" else None, "arch": arch,
                       "val_map": m["val_map"], "best_val_map": m["best_val_map"], "val_map50": m["val_map50"],
                       "energy_mj": cost.energy_mj, "latency_ms": cost.latency_ms, "params": m["params"],
                       "wall_s": round(time.time() - t0, 1), "loadavg": os.getloadavg()[0]}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(name, seed, {k: rec[k] for k in ("val_map", "val_map50", "energy_mj", "wall_s", "loadavg")}, flush=True)


if __name__ == "__main__":
    main()
