"""Evidence for coarse-to-fine GAN-generator search (issue 13) on the embedded translation data.

One command trains, on ``skimage-edges`` (scikit-image photographs paired with their Canny edge
maps), with one recipe (the GAN module: pix2pix L1 + adversarial loss, ``--epochs`` epochs, Adam):

1. the **teacher**: ``gan-generator``'s ``teacher`` preset (the full generator);
2. a **hand-slimmed** generator: the ``slim-half`` preset (every encoder / decoder width halved),
   distilled from the teacher;
3. the **searched** generators: ``examples/gan_translation.yaml`` (three stages: path, operator,
   channel, each over its own strictly fair supernet) with the teacher as ``evaluator.options.teacher``,
   so the ``retrain`` block trains the last stage's front from scratch with distillation.

It prints (and writes to ``--json``) quality (FID and KID on the task's feature extractor, L1 to
the target) vs model size (MB both conventions, stored file) vs FPGA energy and latency (hw_cost,
zcu104), the three stages' fronts (inherited-weight values) and each stage's wall time.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gan_c2f_evidence.py --out /tmp/gan-evidence --json docs/results_gan.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

QUALITY = ("val_fid", "val_kid", "val_loss")
SIZE = ("params", "size_mb", "size_mib", "file_mb")
COST = ("energy_mj", "latency_ms")


def cost_of(cfg: Any, arch: dict[str, Any], input_shape: tuple[int, ...], task: dict[str, Any]) -> dict[str, float]:
    """The search's cost model on ``arch`` (what every candidate of the search was costed with)."""
    from search.engine import CostModel
    from spaces import get_space

    space = get_space(cfg.space)
    cost, _ = CostModel(cfg, space, input_shape, 0, task)(space.validate(space.complete(arch)))
    return {k: cost[k] for k in COST}


def train_baseline(out: Path, preset: str, dm: Any, epochs: int, lr: float, seed: int, **options: Any) -> dict[str, Any]:
    from evaluators.gan_teacher import train_teacher

    if (out / "teacher.json").is_file():
        return json.loads((out / "teacher.json").read_text())
    return train_teacher(out, datamodule=dm, preset=preset, epochs=epochs, lr=lr, seed=seed, **options)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/gan_translation.yaml")
    ap.add_argument("--out", default="/tmp/gan-evidence")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the teacher, the hand-slimmed and the retrained front")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--trials", type=int, nargs=3, default=(12, 16, 16), metavar=("PATH", "OPERATOR", "CHANNEL"))
    ap.add_argument("--supernet-epochs", type=int, default=2)
    ap.add_argument("--executor", default="local", choices=("local", "ray"), help="local: no Ray (a loaded 2-core machine)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import evaluators
    from search.config import load_config
    from search.engine import SearchEngine

    started = time.perf_counter()
    teacher_dir = out / "teacher"
    ev = load_config(args.config).evaluator
    dm = evaluators.get_datamodule(ev.data, seed=0, batch_size=ev.batch_size, **ev.data_kwargs)
    dm.setup("fit")
    task = dm.builder_kwargs()
    shape = tuple(dm.input_shape)

    t0 = time.perf_counter()
    teacher = train_baseline(teacher_dir, "teacher", dm, args.epochs, args.lr, 0)
    teacher_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    slim = train_baseline(out / "slim-half", "slim-half", dm, args.epochs, args.lr, 0, teacher=str(teacher_dir))
    slim_s = time.perf_counter() - t0
    cfg = load_config(args.config, [f"oneshot.epochs={args.supernet_epochs}", f"retrain.epochs={args.epochs}",
                                    f"retrain.lr={args.lr}", f"evaluator.options.teacher={teacher_dir}", f"out={out / 'search'}",
                                    f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", "save_weights=false",
                                    f"executor={args.executor}", f"workers={1 if args.executor == 'local' else 2}"])
    for st, n in zip(cfg.coarse_to_fine.stages, args.trials):  # (--set cannot index a list)
        st.trials = int(n)
    cfg.budget.trials = int(args.trials[-1])  # the search's own loop runs the last stage
    t0 = time.perf_counter()
    summary = SearchEngine(cfg, progress="none").run(overwrite=True)
    search_s = time.perf_counter() - t0
    stages_rec = json.loads((out / "search" / "stages.json").read_text())

    def row(name: str, arch: dict[str, Any], metrics: dict[str, Any], how: str) -> dict[str, Any]:
        return {"model": name, "how": how, **{k: metrics.get(k) for k in (*QUALITY, *SIZE)}, **cost_of(cfg, arch, shape, task)}

    rows = [row("teacher", teacher["arch"], teacher["metrics"], f"preset teacher, {args.epochs} epochs GAN"),
            row("hand-slimmed", slim["arch"], slim["metrics"], f"preset slim-half, {args.epochs} epochs GAN + distillation")]
    retrained = {r["trial"]: r for r in summary["retrained"] if r["state"] == "complete"}
    for f in summary["front"]:
        r = retrained.get(f["trial"])
        if r is None:
            continue
        run = _run_metrics(summary, r["run_id"])
        rows.append(row(f"searched (trial {f['trial']})", f["arch"], run,
                        f"coarse-to-fine front, retrained {args.epochs} epochs GAN + distillation; inherited FID {f['values']['val_fid']:.3g}"))
    fronts = []
    for rec in stages_rec:
        if isinstance(rec.get("front"), list):
            front = [{"trial": r["trial"], **r["values"]} for r in rec["front"]]
        else:
            front = [{"trial": r["trial"], **r["values"]} for r in summary["front"]]
        fronts.append({"stage": rec["stage"], "dims": len(rec["dims"]), "wall_time_s": rec["wall_time_s"], "supernet_s": rec.get("supernet_s"),
                       "chosen": rec.get("chosen"), "front": front})
    result = {"command": "PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gan_c2f_evidence.py " + " ".join(argv or []),
              "loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
              "cpus": os.cpu_count(), "fid_extractor": _parent_tag(summary, "abacus.metric.fid.extractor"), "problem": summary.get("problem"), "models": rows, "stages": fronts,
              "times_s": {"teacher_training": round(teacher["metrics"].get("wall_time_s", teacher_s), 1),
                          "hand_slimmed_training": round(slim["metrics"].get("wall_time_s", slim_s), 1), "search_with_retrain": round(search_s, 1),
                          "total": round(time.perf_counter() - started, 1)},
              "search": {"parent_run_id": summary["parent_run_id"], "tracking_uri": summary["tracking_uri"], "hypervolume": summary["hypervolume"]}}
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


def _parent_tag(summary: dict[str, Any], key: str) -> str | None:
    from mlflow.tracking import MlflowClient

    return MlflowClient(summary["tracking_uri"]).get_run(summary["parent_run_id"]).data.tags.get(key)


def _run_metrics(summary: dict[str, Any], run_id: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    return dict(MlflowClient(summary["tracking_uri"]).get_run(run_id).data.metrics)


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _print(result: dict[str, Any]) -> None:
    cols = ("model", "val_fid", "val_kid", "val_loss", "size_mb", "size_mib", "file_mb", "energy_mj", "latency_ms")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in result["models"]:
        print("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    for st in result["stages"]:
        print(f"\nstage {st['stage']}: {st['dims']} dimensions, {st['wall_time_s']} s (supernet {st['supernet_s']} s), chose {st['chosen']}")
        keys = [k for k in st["front"][0] if k != "trial"] if st["front"] else []
        for f in sorted(st["front"], key=lambda f: f.get("val_fid", 0)):
            print("  trial", f["trial"], " ".join(f"{k}={_fmt(f[k])}" for k in keys))
    print("\ntimes (s):", result["times_s"], " loadavg:", result["loadavg"])


if __name__ == "__main__":
    raise SystemExit(main())
