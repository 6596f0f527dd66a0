"""Small-scale accuracy-vs-cost evidence on the digits data (8x8, 10 classes), same budget per comparison.

Usage::

    python benchmarks/evidence.py [--seeds 0 1 2] [--epochs 15] [--only GROUP ...] [--vision-seeds 0]
                                  [--lr 0.05] [--optimizer sgd] [--vision-lr 3e-3] [--vision-optimizer adamw]
                                  [--out docs/results.json] [--resume] [--threads 2]

Two training recipes, each shared by every member of a comparison: ResNet variants (ops groups
and ManiDP) train with ``--optimizer``/``--lr`` (SGD 0.05), TNT/VTP with ``--vision-optimizer``/
``--vision-lr`` (AdamW 3e-3: with SGD 0.05 the small TNT stays at chance on digits). Epochs,
batch size (64), weight decay and the cosine schedule are the evaluator's and the same for all.
With ``--resume`` and nothing missing, the script only prints the tables from the JSON.

Every variant is built through the public API (``spaces.get_space(...).complete``,
``supernets.build``), trained with ``evaluators.evaluate(model, data="digits", ...)`` and costed
with ``hw_cost.estimate(model, (1, 1, 8, 8), device="zcu104")`` after training (so VTP-pruned and
ManiDP-gated models are costed as trained: slimmed layers, measured active ratios).

Groups (``--only``; default all):

* ``adder_conv``  -- conv ResNet vs AdderNet ResNet (float);
* ``binary``      -- FDA binary vs STE binary (same architecture, same initial weights);
* ``int8_adder``  -- float adder vs 8-bit shared-scale adder (``QuantAdderConv2d``);
* ``tnt``         -- TNT at three depths;
* ``vtp``         -- TNT + VTP at three keep ratios (global threshold, keep = 1 - prune_rate);
* ``manidp``      -- conv ResNet without / with ManiDP gates at two target remain rates.

A variant shared by several groups (e.g. the float adder) is trained once per seed. The JSON at
``--out`` holds one record per (variant, seed): the arch, the training budget, the evaluator's
metrics and the cost report's scalars; ``--resume`` keeps the records already there and runs only
the missing ones, so the groups can be run one at a time on a loaded machine.

STE binary: the ``addernet-resnet`` space always builds FDA binary layers. The STE variant builds
the same architecture and then replaces every ``BinaryConv2d`` by a fresh
``BinaryConv2d(..., grad="ste")`` with the same geometry and schedule arguments (no noise-adaptation
module, as the class does for STE by default), copying the initial weights, so FDA and STE start from
identical weights for a given seed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluators  # noqa: E402
import hw_cost  # noqa: E402
import spaces  # noqa: E402
import supernets  # noqa: E402
from evaluators.recipes.vtp import VTPCallback  # noqa: E402
from supernets.manidp import dynamic_convs  # noqa: E402
from supernets.ops.binary import BinaryConv2d  # noqa: E402

INPUT_SHAPE = (1, 8, 8)
DEVICE = "zcu104"

# Fixed small ResNet for every ResNet comparison: the full ResNet-20 (0.27 M params) costs
# 30-90 s per epoch on the shared 2-core machine, too much for 3 seeds x 5 variants x 10 epochs.
RESNET_SMALL = {**{f"stage{s}.width": 0.5 for s in (1, 2, 3)}, **{f"stage{s}.blocks": 1 for s in (1, 2, 3)}}
# Small TNT shared by the depth and VTP comparisons (auto patch 2 px -> 16 patches of 4 words).
TNT_SMALL = {"tnt.embed_dim": 48, "tnt.outer_heads": 4, "tnt.inner_dim": 8, "tnt.inner_heads": 2,
             "tnt.mlp_ratio": 2, "tnt.inner_mlp_ratio": 2}


def _stages(op: str, **extra: Any) -> dict[str, Any]:
    return {**RESNET_SMALL, **{f"stage{s}.op": op for s in (1, 2, 3)},
            **{f"stage{s}.{k}": v for s in (1, 2, 3) for k, v in extra.items()}}


def to_ste(model: nn.Module) -> int:
    """Replace every ``BinaryConv2d`` of ``model`` by an STE copy (same geometry, schedule and weights).

    Returns the number of layers replaced. Done on a freshly built (untrained) model, so only the
    initial weights need to be carried over.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, BinaryConv2d):
                continue
            ste = BinaryConv2d(
                child.in_channels, child.out_channels, child.kernel_size, stride=child.stride, padding=child.padding,
                bias=child.bias is not None, dilation=child.dilation, groups=child.groups, grad="ste",
                omega=child.omega, n_start=child.n_start, n_end=child.n_end, clip=child.clip, alpha0=child.alpha0,
                noise_progress_offset=child.noise_progress_offset, weight_scale=child.weight_scale,
                act_scale=child.act_scale, binarize_act=child.binarize_act, zero_value=child.zero_value,
            )
            with torch.no_grad():
                ste.weight.copy_(child.weight)
                if child.bias is not None and ste.bias is not None:
                    ste.bias.copy_(child.bias)
            setattr(parent, name, ste)
            replaced += 1
    if replaced == 0:
        raise ValueError("to_ste: the model has no BinaryConv2d layers")
    return replaced


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a space, a partial arch and an optional post-build transform."""

    key: str
    label: str
    space: str
    partial: Mapping[str, Any]
    transform: Callable[[nn.Module], Any] | None = None
    note: str = ""
    recipe: str = "resnet"  # which training recipe (--lr/--optimizer or --vision-lr/--vision-optimizer)


@dataclass
class Group:
    name: str
    title: str
    variants: list[str]
    vision: bool = False  # single seed by default (``--vision-seeds``)
    extra: list[str] = field(default_factory=list)


VARIANTS: dict[str, Variant] = {v.key: v for v in [
    Variant("conv", "conv ResNet (float)", "addernet-resnet", _stages("conv")),
    Variant("adder", "AdderNet ResNet (float)", "addernet-resnet", _stages("adder")),
    Variant("adder_int8", "AdderNet ResNet, int8 shared scale", "addernet-resnet", _stages("adder", bits=8)),
    Variant("binary_fda", "binary ResNet, FDA gradient", "addernet-resnet", _stages("binary")),
    Variant("binary_ste", "binary ResNet, STE gradient", "addernet-resnet", _stages("binary"), transform=to_ste,
            note="built as FDA, BinaryConv2d swapped for grad='ste' copies"),
    *[Variant(f"tnt_d{d}", f"TNT depth {d}", "tnt", {**TNT_SMALL, "tnt.depth": d}, recipe="tnt") for d in (2, 4, 6)],
    *[Variant(f"vtp_k{int(round(100 * (1 - pr)))}", f"TNT depth 4 + VTP keep {1 - pr:.1f}", "tnt",
              {**TNT_SMALL, "tnt.depth": 4, "vtp.enabled": True, "vtp.prune_rate": pr}, recipe="tnt") for pr in (0.0, 0.3, 0.6)],
    *[Variant(f"manidp_r{int(round(100 * r))}", f"conv ResNet + ManiDP remain {r}", "addernet-resnet",
              {**_stages("conv"), "manidp.enabled": True, "manidp.target_remain_rate": r}) for r in (0.7, 0.4)],
]}

GROUPS: dict[str, Group] = {g.name: g for g in [
    Group("adder_conv", "Adder ResNet vs conv ResNet", ["conv", "adder"]),
    Group("binary", "FDA vs STE binary", ["binary_fda", "binary_ste"]),
    Group("int8_adder", "int8 shared-scale adder vs float adder", ["adder", "adder_int8"]),
    Group("tnt", "TNT at three depths", ["tnt_d2", "tnt_d4", "tnt_d6"], vision=True),
    Group("vtp", "VTP at three keep ratios (TNT depth 4)", ["vtp_k100", "vtp_k70", "vtp_k40"], vision=True,
          extra=["tnt_d4"]),
    Group("manidp", "ManiDP at two remain rates (conv ResNet)", ["manidp_r70", "manidp_r40"], vision=True,
          extra=["conv"]),
]}

COST_KEYS = ("energy_mj", "latency_ms", "lut", "ff", "dsp", "bram", "feasible", "energy_compute_mj", "ops")


def run_one(variant: Variant, seed: int, epochs: int, lr: float, optimizer: str) -> dict[str, Any]:
    """Build (seeded), train, cost; returns one JSON-ready record."""
    space = spaces.get_space(variant.space)
    arch = space.complete(dict(variant.partial))
    torch.manual_seed(seed)  # the builder's initialisation is part of what the seed controls
    model = supernets.build(variant.space, arch, input_shape=INPUT_SHAPE, num_classes=10)
    transformed = variant.transform(model) if variant.transform is not None else None
    t0 = time.perf_counter()
    callbacks = []
    vtp_cb = None
    if arch.get("vtp.enabled"):  # our own instance (evaluate then adds none) so the kept fraction is readable
        vtp_cb = VTPCallback()
        callbacks.append(vtp_cb)
    # test_fraction=0: the 1437 / 360 split these tables were measured on (before the held-out test split)
    metrics = evaluators.evaluate(model, data="digits", data_kwargs={"test_fraction": 0.0}, epochs=epochs, lr=lr, optimizer=optimizer, seed=seed,
                                  callbacks=callbacks)
    wall = time.perf_counter() - t0
    model.eval()
    report = hw_cost.estimate(model, (1, *INPUT_SHAPE), device=DEVICE)
    cost = {k: (bool(getattr(report, k)) if k == "feasible" else float(getattr(report, k))) for k in COST_KEYS}
    extra: dict[str, Any] = {"uncosted": list(report.uncosted)}
    ratios = {name: conv.active_ratio for name, conv in dynamic_convs(model)}
    if ratios:  # ManiDP: the ratios measured on validation data during evaluate(), used by the cost
        extra["active_ratios"] = ratios
        known = [r for r in ratios.values() if r is not None]
        extra["mean_active_ratio"] = sum(known) / len(known) if known else None
    if vtp_cb is not None:
        extra["vtp_kept_fraction"] = vtp_cb.kept_fraction
    if transformed is not None:
        extra["transform_result"] = transformed
    params_after = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"variant": variant.key, "label": variant.label, "space": variant.space, "seed": seed, "arch": arch,
            "epochs": epochs, "lr": lr, "optimizer": optimizer, "metrics": metrics, "params_after_training": params_after,
            "cost": cost, "extra": extra, "run_wall_s": wall}


def _fmt_mean(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def tables(records: list[dict[str, Any]], groups: list[str]) -> str:
    """Markdown tables (one per group) from the records."""
    out = []
    for g in groups:
        grp = GROUPS[g]
        out.append(f"### {grp.title}\n")
        out.append("| variant | seeds | val acc % (mean ± std) | per seed | params | energy_mj | of which compute | latency_ms | LUT | DSP | kept / active |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in [*grp.extra, *grp.variants]:
            rs = [r for r in records if r["variant"] == key]
            if not rs:
                continue
            accs = [r["metrics"]["val_accuracy"] for r in rs]
            c = rs[0]["cost"]  # cost is deterministic for fixed-shape models; ManiDP/VTP vary per seed
            energy = _fmt_mean([r["cost"]["energy_mj"] for r in rs], 1.0, 4)
            comp = _fmt_mean([r["cost"]["energy_compute_mj"] for r in rs], 1.0, 4)
            lat = _fmt_mean([r["cost"]["latency_ms"] for r in rs], 1.0, 4)
            lut = _fmt_mean([r["cost"]["lut"] for r in rs], 1.0, 0)
            params = _fmt_mean([float(r["params_after_training"]) for r in rs], 1.0, 0)
            per_seed = " / ".join(f"{100 * a:.1f}" for a in accs)
            kept = [r["extra"].get("vtp_kept_fraction", r["extra"].get("mean_active_ratio")) for r in rs]
            kept_s = _fmt_mean([float(k) for k in kept], 1.0, 3) if all(k is not None for k in kept) else "-"
            out.append(f"| {rs[0]['label']} | {len(rs)} | {_fmt_mean(accs, 100.0)} | {per_seed} | {params} | {energy} | {comp} | {lat} | {lut} | {c['dsp']:.0f} | {kept_s} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the ops comparisons")
    ap.add_argument("--vision-seeds", type=int, nargs="+", default=None,
                    help="seeds of the tnt/vtp/manidp groups (default: same as --seeds)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate of the ResNet variants")
    ap.add_argument("--optimizer", default="sgd", help="optimizer of the ResNet variants")
    ap.add_argument("--vision-lr", type=float, default=3e-3, help="learning rate of the TNT/VTP variants")
    ap.add_argument("--vision-optimizer", default="adamw", help="optimizer of the TNT/VTP variants")
    ap.add_argument("--only", nargs="+", choices=sorted(GROUPS), default=None, metavar="GROUP",
                    help=f"groups to run, of {sorted(GROUPS)} (default all)")
    ap.add_argument("--out", type=Path, default=Path("docs/results.json"))
    ap.add_argument("--resume", action="store_true", help="keep records already in --out, run only missing ones")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise SystemExit(f"--epochs: expected a positive integer, found {args.epochs}")
    torch.set_num_threads(args.threads)
    groups = args.only or list(GROUPS)
    vision_seeds = args.vision_seeds if args.vision_seeds is not None else args.seeds

    doc: dict[str, Any] = {"records": []}
    if args.resume and args.out.exists():
        doc = json.loads(args.out.read_text())
    records: list[dict[str, Any]] = doc["records"]

    todo: list[tuple[str, int]] = []
    for g in groups:
        grp = GROUPS[g]
        seeds = vision_seeds if grp.vision else args.seeds
        for key in [*grp.extra, *grp.variants]:
            for s in seeds:
                if (key, s) not in todo:
                    todo.append((key, s))
    for key, s in todo:
        v = VARIANTS[key]
        lr, opt = (args.vision_lr, args.vision_optimizer) if v.recipe == "tnt" else (args.lr, args.optimizer)
        done = [r for r in records if r["variant"] == key and r["seed"] == s]
        if done and (done[0]["epochs"], done[0]["lr"], done[0].get("optimizer")) == (args.epochs, lr, opt):
            continue
        records[:] = [r for r in records if not (r["variant"] == key and r["seed"] == s)]
        rec = run_one(v, s, args.epochs, lr, opt)
        records.append(rec)
        print(f"{key:12s} seed {s}: val_acc {rec['metrics']['val_accuracy']:.4f} energy {rec['cost']['energy_mj']:.4f} mJ "
              f"latency {rec['cost']['latency_ms']:.4f} ms LUT {rec['cost']['lut']:.0f} ({rec['run_wall_s']:.0f} s)", flush=True)
        doc["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__, "threads": args.threads}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=str))
    print(tables(records, groups))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
