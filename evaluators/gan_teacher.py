"""The teacher generator of GAN distillation: train one once, export it, load it from a path.

A teacher is an exported generator directory (``supernets.save_exported``: ``arch.json`` +
safetensors weights, no pickle) plus ``teacher.json`` (how it was trained, its validation
metrics). The translation task loads it from ``evaluator.options.teacher`` and adds
``lambda_distill * |G(x) - T(x)|_1`` to the generator's loss. Pretrained teachers come only from a path.

Command line::

    python -m evaluators.gan_teacher --out runs/gan-teacher --epochs 20 [--data skimage-edges] [--preset teacher]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from torch import nn

__all__ = ["TEACHER_FILE", "load_generator", "train_teacher", "main"]

TEACHER_FILE = "teacher.json"


def load_generator(path: str | Path) -> nn.Module:
    """The exported generator in ``path`` in eval mode; a one-line error for a wrong path."""
    from supernets import load_exported

    p = Path(path)
    if not (p / "arch.json").is_file():
        raise ValueError(f"teacher: expected an exported generator directory (with arch.json) at {str(p)!r}, found none")
    return load_exported(p).eval()


def train_teacher(out_dir: str | Path, *, datamodule: Any, space: str = "gan-generator", preset: str = "teacher",
                  arch: Mapping[str, Any] | None = None, epochs: int = 20, lr: float = 2e-4, optimizer: str = "adam",
                  seed: int = 0, verbose: bool = False, **options: Any) -> dict[str, Any]:
    """Train the generator ``preset`` (or ``arch``) of ``space`` with the task's GAN loss (no
    distillation), export it to ``out_dir`` and return its ``teacher.json`` record."""
    import pytorch_lightning as pl

    import supernets
    from spaces import get_space

    from .evaluate import evaluate

    sp = get_space(space)
    full = sp.validate(sp.complete({**sp.preset(preset), **(arch or {})}))
    task = datamodule.builder_kwargs()
    pl.seed_everything(seed, workers=True, verbose=False)
    model = supernets.build(sp, full, **task)
    metrics = evaluate(model, datamodule=datamodule, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=0.0, seed=seed,
                       verbose=verbose, **options)
    out = Path(out_dir)
    supernets.save_exported(model, full, sp, task, out)
    record = {"space": space, "arch": full, "data": datamodule.describe(), "epochs": int(epochs), "lr": float(lr),
              "optimizer": optimizer, "seed": int(seed), "options": dict(options),
              "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    (out / TEACHER_FILE).write_text(json.dumps(record, indent=2, default=str))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evaluators.gan_teacher", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory to write the exported teacher to (must not exist)")
    ap.add_argument("--data", default="skimage-edges")
    ap.add_argument("--data-kwargs", default="{}", help="JSON object of data-module options")
    ap.add_argument("--space", default="gan-generator")
    ap.add_argument("--preset", default="teacher")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from .teacher_cli import checked_teacher_inputs

    kwargs = checked_teacher_inputs(args.data_kwargs, args.out)
    if kwargs is None:
        return 2
    from .data import get_datamodule

    try:
        dm = get_datamodule(args.data, **{"batch_size": args.batch_size, **kwargs})
        record = train_teacher(args.out, datamodule=dm, space=args.space, preset=args.preset, epochs=args.epochs, lr=args.lr,
                               seed=args.seed)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 2
    print(json.dumps(record["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
