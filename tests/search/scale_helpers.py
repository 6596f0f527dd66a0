"""A one-layer space and an instant evaluator: searches whose time is all the engine's own."""

from __future__ import annotations

from spaces import Categorical, SearchSpace, register_space


def build_tiny(arch, *, input_shape=(1, 8, 8), num_classes=10, **_):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(int(input_shape[0] * input_shape[1] * input_shape[2]), num_classes))


def tiny_workloads(arch, input_shape, *, num_classes=10):
    """The same layer as a workload row: the cost model's fast path (nothing built or traced)."""
    n, features = int(input_shape[0]), int(input_shape[1] * input_shape[2] * input_shape[3])
    return [{"op": "linear", "ops": n * features * num_classes, "params": features * num_classes + num_classes,
             "in_channels": features, "out_channels": num_classes, "kernel": 1, "out_pixels": n,
             "in_elems": n * features, "out_elems": n * num_classes, "name": "1"}]


def instant(model, *, datamodule, epochs, seed, reporter):
    """Two independent deterministic scores from the seed, no training (a front of several points)."""
    return {"val_accuracy": (seed * 7919 % 1000) / 1000.0, "val_loss": (seed * 104729 % 997) / 997.0, "epochs": epochs}


TOY = "none (a toy that measures the engine's own overhead)"  # the registry contract wants every dimension to name its source


def register() -> str:
    name = "scale-toy"
    register_space(name, overwrite=True)(
        lambda: SearchSpace(name, [Categorical(label, tuple(range(64)), paper=TOY) for label in ("x", "y")], builder="scale_helpers:build_tiny",
                            workloads_fn="scale_helpers:tiny_workloads"))
    return name


def config(tmp_path, uri: str, trials: int, name: str = "scale", **extra):
    from search.config import load_config

    return load_config(None, [f"mlflow.tracking_uri={uri}"], name=name, space=register(),
                       objectives=[{"name": "val_accuracy", "direction": "maximize"}, {"name": "val_loss", "direction": "minimize"}],
                       budget={"trials": trials, "epochs": 1}, strategy={"name": "random"}, workers=1, executor="local",
                       evaluator={"function": "scale_helpers:instant"}, out=str(tmp_path / "runs" / name), save_weights=False, **extra)
