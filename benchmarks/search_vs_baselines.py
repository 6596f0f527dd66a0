"""Does a time-budgeted search beat the hand-made baselines on data it never saw?

Usage::

    python benchmarks/search_vs_baselines.py --run-dir /tmp/abacus-svb [--time-s 900] [--epochs 10]
           [--seeds 0 1 2] [--workers 2] [--scheduler mo-asha|none] [--out docs/search_vs_baselines.json] [--skip-baselines]

1. Baselines: the ``addernet-resnet`` presets ``resnet20-conv`` and ``resnet20-adder`` (ResNet-20,
   all stages conv / all adder), each trained ``--epochs`` epochs with 3 seeds on the digits
   training split (split seed 0, the search's), scored on the held-out test split, costed by the
   search's own cost model (``search.engine.CostModel``: same device, same style).
2. Search: ``abacus search`` (the CLI, stderr to a log: the plain per-trial lines) over the same
   space with float stages, MO-TPE (+ MO-ASHA unless ``--scheduler none``), objectives val_accuracy (max) / energy_mj (min),
   ``budget.time_s`` seconds, the same epochs, and a ``retrain`` block that trains every front
   member again with the same epochs and the same 3 seeds and scores it on the test split.
3. The table: search value, test value (mean ± std over the seeds) and energy of every front member
   and of the baselines, and whether a member dominates both baselines on test (mean test accuracy
   at least as high and energy at least as low as each baseline, one of them strictly).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = {"resnet20-conv": "ResNet-20 conv (baseline)", "resnet20-adder": "ResNet-20 AdderNet (baseline)"}


def search_config(name: str, run_dir: Path, time_s: float, epochs: int, workers: int, seeds: list[int],
                  scheduler: str = "mo-asha") -> dict[str, Any]:
    return {
        "name": name,
        "space": "addernet-resnet",
        "fixed": {f"stage{s}.bits": 32 for s in (1, 2, 3)},
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
        "strategy": {"name": "tpe"},
        "scheduler": {"name": "mo-asha", "min_epochs": max(1, min(3, epochs // 3)), "reduction_factor": 3} if scheduler == "mo-asha" else {"name": "none"},
        "budget": {"time_s": time_s, "epochs": epochs},
        "evaluator": {"data": "digits", "lr": 0.05, "batch_size": 64},
        "hardware": {"device": "zcu104", "style": "overlay"},
        "seed": 0,
        "workers": workers,
        "save_weights": False,
        "retrain": {"epochs": epochs, "seeds": len(seeds)},
        "mlflow": {"tracking_uri": f"sqlite:///{run_dir / 'mlflow.db'}"},
        "out": str(run_dir / "search"),
    }


def baseline(preset: str, seed: int, epochs: int, cfg_path: Path) -> dict[str, Any]:
    """One baseline run: seeded build, train on the search's split, test once, cost as the search does."""
    import torch
    from pytorch_lightning import seed_everything

    import evaluators
    import supernets
    from search.config import load_config
    from search.engine import CostModel
    from search.splits import describe, split_seed
    from spaces import get_space

    cfg = load_config(cfg_path)
    torch.set_num_threads(1)
    space = get_space(cfg.space)
    arch = space.preset(preset)
    dm = evaluators.get_datamodule("digits", seed=split_seed(cfg), batch_size=cfg.evaluator.batch_size)
    seed_everything(seed, workers=True, verbose=False)
    model = supernets.build(space, arch, input_shape=tuple(dm.input_shape), num_classes=int(dm.num_classes))
    t0 = time.perf_counter()
    metrics = evaluators.evaluate(model, datamodule=dm, epochs=epochs, lr=cfg.evaluator.lr, optimizer=cfg.evaluator.optimizer,
                                  weight_decay=cfg.evaluator.weight_decay, seed=seed, test=True)
    cost, _ = CostModel(cfg, space, tuple(dm.input_shape), int(dm.num_classes))(arch)
    return {"preset": preset, "seed": seed, "metrics": metrics, "energy_mj": cost["energy_mj"], "split": describe(dm),
            "wall_s": time.perf_counter() - t0}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def dominates(acc: float, energy: float, base_acc: float, base_energy: float) -> bool:
    return acc >= base_acc and energy <= base_energy and (acc > base_acc or energy < base_energy)


def table(doc: dict[str, Any]) -> str:
    rows = ["| candidate | val acc % (search) | test acc % (mean ± std) | per seed | energy_mj | dominates both baselines on test |",
            "|---|---|---|---|---|---|"]
    bases = {}
    for preset, label in PRESETS.items():
        runs = [r for r in doc.get("baselines", []) if r["preset"] == preset]
        if not runs:
            continue
        accs = [r["metrics"]["test_accuracy"] for r in runs]
        m, s = _mean_std(accs)
        bases[preset] = (m, runs[0]["energy_mj"])
        vals = [r["metrics"]["val_accuracy"] for r in runs]
        rows.append(f"| {label} | {100 * statistics.fmean(vals):.1f} (mean, not searched) | {100 * m:.1f} ± {100 * s:.1f} | "
                    f"{' / '.join(f'{100 * a:.1f}' for a in accs)} | {runs[0]['energy_mj']:.4f} | - |")
    summary = doc.get("search") or {}
    for row in summary.get("front", []):
        per = (row.get("test_per_seed") or {}).get("test_accuracy", [])
        if not per:
            rows.append(f"| trial {row['trial']} ({row['arch_id']}) | {100 * row['values']['val_accuracy']:.1f} | - | - | {row['values']['energy_mj']:.4f} | - |")
            continue
        m, s = _mean_std(per)
        e = row["values"]["energy_mj"]
        dom = bases and all(dominates(m, e, ba, be) for ba, be in bases.values())
        rows.append(f"| trial {row['trial']} ({row['arch_id']}) | {100 * row['values']['val_accuracy']:.1f} | {100 * m:.1f} ± {100 * s:.1f} | "
                    f"{' / '.join(f'{100 * a:.1f}' for a in per)} | {e:.4f} | {'yes' if dom else 'no'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--time-s", type=float, default=900.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "search_vs_baselines.json")
    ap.add_argument("--scheduler", choices=("mo-asha", "none"), default="mo-asha", help="early stopping of the search")
    ap.add_argument("--skip-baselines", action="store_true", help="keep the baselines already in --out")
    ap.add_argument("--table-only", action="store_true", help="print the table from --out and stop")
    args = ap.parse_args(argv)
    if args.table_only:
        print(table(json.loads(args.out.read_text())))
        return 0
    args.run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = args.run_dir / "search.yaml"
    cfg_path.write_text(yaml.safe_dump(search_config("svb", args.run_dir, args.time_s, args.epochs, args.workers, args.seeds, args.scheduler), sort_keys=False))
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.skip_baselines and args.out.exists() else {}
    doc.update({"epochs": args.epochs, "time_s": args.time_s, "seeds": args.seeds, "config": yaml.safe_load(cfg_path.read_text())})
    doc["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    if not args.skip_baselines:
        doc["baselines"] = []
        for preset in PRESETS:
            for seed in args.seeds:
                rec = baseline(preset, seed, args.epochs, cfg_path)
                doc["baselines"].append(rec)
                print(f"{preset} seed {seed}: val {rec['metrics']['val_accuracy']:.4f} test {rec['metrics']['test_accuracy']:.4f} "
                      f"energy {rec['energy_mj']:.4f} mJ ({rec['wall_s']:.0f} s, load {open('/proc/loadavg').read().split()[0]})", flush=True)
                args.out.write_text(json.dumps(doc, indent=1, default=str))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    t0 = time.perf_counter()
    doc["loadavg_search_start"] = open("/proc/loadavg").read().split()[:3]
    with open(args.run_dir / "search.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(cfg_path)], cwd=args.run_dir, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    doc["search_wall_s"] = time.perf_counter() - t0
    doc["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    summary_path = args.run_dir / "search" / "summary.json"
    if proc.returncode != 0 or not summary_path.exists():
        print(f"search failed (exit {proc.returncode}); see {args.run_dir / 'search.log'}", file=sys.stderr)
        args.out.write_text(json.dumps(doc, indent=1, default=str))
        return 1
    summary = json.loads(summary_path.read_text())
    doc["search"] = {k: summary[k] for k in ("trials", "complete", "failed", "pruned", "infeasible", "front", "retrained", "wall_time_s",
                                             "selection_note", "split", "stopped_by", "hypervolume")}
    args.out.write_text(json.dumps(doc, indent=1, default=str))
    print(table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
