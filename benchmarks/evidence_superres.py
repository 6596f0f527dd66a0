"""Evidence for FADN on the embedded SR data: bicubic, an EDSR baseline and FADN at two target costs.

Same data (``skimage-sr``, x2, split seed 0), same training budget and recipe for every trained
variant; PSNR/SSIM on the Y channel (border 2, 8-bit outputs) of the fixed validation patches; cost
from ``hw_cost.estimate`` on a 48x48 LR input *after* training, so FADN is costed on the branch mix
it measured on the validation images. Prints a markdown table and writes the raw records as JSON.

    python benchmarks/evidence_superres.py --epochs 8 --out docs/results_superres.json
    python benchmarks/evidence_superres.py --merge a.json b.json --out docs/results_superres.json   # one table from parallel runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import evaluators
import hw_cost
import spaces
import supernets
from evaluators.image2image import SuperResolutionModule

BODY = {"edsr.scale": 2, "edsr.blocks": 4, "edsr.channels": 32, "edsr.op": "conv", "edsr.bits": 32, "edsr.res_scale": 1.0}
VARIANTS = {
    "edsr": dict(BODY),
    "fadn_t0.5": {**BODY, "fadn.enabled": True, "fadn.target_cost": 0.5, "fadn.lambda_sparse": 1.0},
    "fadn_t0.3": {**BODY, "fadn.enabled": True, "fadn.target_cost": 0.3, "fadn.lambda_sparse": 1.0},
}
COST_SHAPE = (1, 3, 48, 48)


def datamodule(seed: int):
    return evaluators.get_datamodule("skimage-sr", scale=2, patch_size=24, patches_per_epoch=256, val_patch_size=48,
                                     val_patches_per_image=8, batch_size=16, seed=0)


@torch.no_grad()
def bicubic_scores(dm) -> dict[str, float]:
    dm.setup()
    module = SuperResolutionModule(torch.nn.Identity(), scale=dm.scale)
    for lr, hr in dm.val_dataloader():
        up = F.interpolate(lr, scale_factor=dm.scale, mode="bicubic", align_corners=False)
        p, t = module.prepare(up, hr)
        for m in module.val_metrics.values():
            m.update(p, t)
    return {f"val_{k}": float(m.compute()) for k, m in module.val_metrics.items()}


def run(name: str, seed: int, epochs: int) -> dict:
    space = spaces.get_space("edsr-fadn")
    arch = space.complete(VARIANTS[name])
    dm = datamodule(seed)
    torch.manual_seed(seed)
    model = supernets.build(space, arch, **dm.builder_kwargs())
    start = time.perf_counter()
    metrics = evaluators.evaluate(model, datamodule=dm, epochs=epochs, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                  batch_size=16, seed=seed)
    report = hw_cost.estimate(model, COST_SHAPE, device="zcu104")
    conv_ops = sum(r.ops for r in report.rows if r.op in ("conv", "dwconv"))
    return {"variant": name, "seed": seed, "epochs": epochs, "arch": arch, "metrics": metrics,
            "cost": {k: v for k, v in report.to_dict().items() if isinstance(v, (int, float, bool))},
            "conv_macs": conv_ops, "wall_s": time.perf_counter() - start}


def table(records: list[dict], bicubic: dict[str, float]) -> str:
    lines = ["| variant | PSNR Y (dB) | SSIM Y | measured body cost ratio | conv MMACs (48x48 LR) | energy_mj | of which compute | latency_ms |",
             "|---|---|---|---|---|---|---|---|",
             f"| bicubic | {bicubic['val_psnr']:.2f} | {bicubic['val_ssim']:.4f} | - | - | - | - | - |"]
    for r in records:
        m, c = r["metrics"], r["cost"]
        ratio = m.get("val_cost_ratio")
        lines.append(f"| {r['variant']} (seed {r['seed']}) | {m['val_psnr']:.2f} | {m['val_ssim']:.4f} | "
                     f"{'1 (static)' if ratio is None else f'{ratio:.3f}'} | {r['conv_macs'] / 1e6:.1f} | {c['energy_mj']:.4f} | "
                     f"{c['energy_compute_mj']:.4f} | {c['latency_ms']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("docs/results_superres.json"))
    ap.add_argument("--merge", type=Path, nargs="+", help="print one table from these JSON files (and write it to --out)")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        merged = {"info": [p["info"] for p in parts], "records": [r for p in parts for r in p["records"]]}
        args.out.write_text(json.dumps(merged, indent=1, default=str))
        print(table(merged["records"], parts[0]["info"]["bicubic"]))
        for p in parts:
            print(f"load average at start {p['info']['loadavg_start']}, at end {p['info']['loadavg_end']}")
        return
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    bicubic = bicubic_scores(datamodule(0))
    records = [run(name, seed, args.epochs) for seed in args.seeds for name in args.only]
    info = {"machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)",
            "loadavg_start": load0, "loadavg_end": os.getloadavg(), "cost_input": COST_SHAPE, "bicubic": bicubic}
    args.out.write_text(json.dumps({"info": info, "records": records}, indent=1, default=str))
    print(table(records, bicubic))
    print(f"\nload average at start {load0}, at end {info['loadavg_end']}; wall "
          f"{sum(r['wall_s'] for r in records):.0f} s")


if __name__ == "__main__":
    main()
