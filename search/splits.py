"""One data split per search: which seed fixes it, its fingerprint on the parent run, the resume check.

Why: a search that validates each trial on different images selects lucky splits, not good
architectures. The split is fixed by the search's seed (or ``evaluator.split_seed``) and the data
configuration; every trial, retrain and resume must see the same validation images. The driver
records the split's identity (seed, sizes and SHA-256 of the validation and test members) as tags
of the MLflow parent run; each worker checks the split it built against it (``TrialSpec.split_sha256``),
and ``resume`` refuses a run directory whose data now splits differently.
"""

from __future__ import annotations

from typing import Any

from search.errors import ConfigError

# data-module keywords the engine sets itself; a user's data_kwargs must not carry them
ENGINE_DATA_KEYS = {
    "seed": "the split follows the search's 'seed', or set 'evaluator.split_seed'",
    "batch_size": "set 'evaluator.batch_size'",
    "train_on_val": "set 'retrain.train_on_val'",
}
TAG_PREFIX = "split."


def check_data_kwargs(cfg: Any) -> None:
    """A data_kwargs key the engine sets is a config error (it used to crash with a traceback)."""
    for key, hint in ENGINE_DATA_KEYS.items():
        if key in cfg.evaluator.data_kwargs:
            raise ConfigError(f"evaluator.data_kwargs.{key}", f"no '{key}' key, the engine sets it ({hint})",
                              cfg.evaluator.data_kwargs[key])


def split_seed(cfg: Any) -> int:
    """The seed of the train/validation split: ``evaluator.split_seed``, else the search's seed."""
    s = getattr(cfg.evaluator, "split_seed", None)
    return int(cfg.seed if s is None else s)


def describe(datamodule: Any) -> dict[str, Any]:
    """The split identity of a data module (see ``evaluators.data.splits.split_identity``)."""
    from evaluators.data.splits import split_identity

    return split_identity(datamodule)


def as_tags(identity: dict[str, Any]) -> dict[str, str]:
    return {f"{TAG_PREFIX}{k}": str(v) for k, v in identity.items()}


def record(client: Any, parent_run_id: str, identity: dict[str, Any]) -> None:
    """Tag the parent run with the split identity (MLflow's own tags, searchable in the UI)."""
    for key, value in as_tags(identity).items():
        client.set_tag(parent_run_id, key, value)


def check_on_resume(client: Any, parent_run_id: str, identity: dict[str, Any]) -> None:
    """Refuse to resume onto a different split; runs recorded before splits were tagged pass."""
    tags = client.get_run(parent_run_id).data.tags
    recorded = {k[len(TAG_PREFIX):]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
    if not recorded:
        return
    now = {k: str(v) for k, v in identity.items()}
    differ = [k for k in ("split_seed", "val_sha256", "val_size", "test_sha256", "test_size") if recorded.get(k, now.get(k)) != now.get(k)]
    if differ:
        found = ", ".join(f"{k}={now.get(k)}" for k in differ)
        expected = ", ".join(f"{k}={recorded.get(k)}" for k in differ)
        raise ConfigError("evaluator.data", f"the data split recorded on the search's parent run ({expected})",
                          f"{found} (the data or its configuration changed since the search started)")
