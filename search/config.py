"""The experiment config: a validated pydantic model, loaded from YAML plus ``--set`` overrides.

Everything is checked before anything is written or started (Lightning's habit): types and
ranges by pydantic, then names against the registries (space, strategy, data set, device),
objective names against the metrics an evaluation and a cost report produce, and constraints.
The first problem is reported as one line naming the key, what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.errors import ConfigError

# classification's; every task names its own (evaluators.tasks: val_psnr, val_ssim for super-resolution)
PER_EPOCH_METRICS = ("val_accuracy", "best_val_accuracy", "val_loss")
EVAL_METRICS = ("val_accuracy", "best_val_accuracy", "val_loss", "params", "macs", "wall_time_s")
COMMON_EVAL_METRICS = ("params", "macs", "size_mb", "size_mib", "file_mb", "wall_time_s")
CONSTRAINABLE = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram",
                 "lut_util", "ff_util", "dsp_util", "bram_util", "onchip_dynamic_power_w", "ddr_bytes", "ops")
COST_FIELDS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Objective(_Strict):
    name: str
    direction: Literal["maximize", "minimize"]


class Strategy(_Strict):
    name: str = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)


class Budget(_Strict):
    """Stop asking for trials at ``trials`` or after ``time_s`` seconds, whichever comes first
    (``search/budget.py``); with neither given, 20 trials."""

    trials: int | None = Field(None, ge=1)
    time_s: float | None = Field(None, gt=0)
    epochs: int = Field(5, ge=1)
    trial_timeout_s: float | None = Field(None, gt=0)
    max_retries: int = Field(2, ge=0)  # times Ray re-runs a trial whose worker process died
    max_failures: int = Field(5, ge=0)  # consecutive failures with one reason that end the search (0: never)
    max_infeasible: int = Field(500, ge=1)  # consecutive infeasible candidates before the constraints are declared empty

    @model_validator(mode="after")
    def _default_trials(self) -> "Budget":
        if self.trials is None and self.time_s is None:
            self.trials = 20
        return self


class Scheduler(_Strict):
    """Early stopping: ``mo-asha`` (any number of objectives) or an Optuna pruner (one objective)."""

    name: Literal["none", "mo-asha", "median", "percentile", "sha", "hyperband"] = "none"
    min_epochs: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    tie_break: Literal["crowding", "hypervolume"] = "crowding"
    startup_trials: int = Field(5, ge=0)


class Evaluator(_Strict):
    data: str = "digits"
    data_kwargs: dict[str, Any] = Field(default_factory=dict)
    lr: float = Field(0.05, gt=0)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    split_seed: int | None = None  # seed of the train/validation split; None = the search's seed
    # "module:function" replacing the Lightning training, called as
    # fn(model, datamodule=dm, epochs=..., seed=..., reporter=...) -> dict of metrics
    # (zero-cost proxies, a custom training loop, or a stub for measuring the engine's overhead)
    function: str | None = None
    # task options for the evaluator, e.g. detection's {teacher: DIR, teacher_epochs: N}; existing
    # files and folders named here are logged as artifacts of the search's parent run
    options: dict[str, Any] = Field(default_factory=dict)


class Hardware(_Strict):
    device: str = "zcu104"
    style: Literal["overlay", "dataflow"] = "overlay"
    pe_array: tuple[int, int] | None = None
    default_bits: int | None = Field(None, ge=1, le=32)
    mult_impl: Literal["auto", "dsp", "lut"] = "auto"


class Tracking(_Strict):
    experiment: str | None = None
    tracking_uri: str | None = None


class Resources(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)


class Retrain(_Strict):
    """Train every member of the final front again from scratch, for longer (own MLflow runs)."""

    epochs: int = Field(..., ge=1)
    lr: float | None = Field(None, gt=0)
    seed_offset: int = 1000
    seeds: int = Field(1, ge=1)  # runs per member, with different seeds; the test values are their mean
    train_on_val: bool = False  # train on train + validation (the test split stays unseen)


class OneShot(_Strict):
    """Weight-sharing search: train the space's supernet once, then score every candidate with
    inherited weights (``search/oneshot.py``); a ``retrain`` block trains the front from scratch."""

    epochs: int = Field(10, ge=1)
    sampling: str = "strict-fair"  # a path sampler of supernets.list_path_samplers()
    sampler_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {n_random: 2} for sandwich
    recalibration_batches: int = Field(10, ge=1)
    candidates_per_task: int = Field(32, ge=1)  # candidates scored by one Ray task
    lr: float | None = Field(None, gt=0)  # supernet learning rate (default: evaluator.lr)
    workers: int | None = Field(None, ge=1)  # supernet training replicas (default: workers); > 1 = Ray Train DDP


class Stage(_Strict):
    """One stage of a coarse-to-fine search: the dimensions it searches (shell patterns over
    labels, or ``group:NAME`` for dimensions a space tags with a group) and its budget."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    dims: list[str] = Field(..., min_length=1)
    trials: int = Field(..., ge=1)  # candidates scored in this stage
    epochs: int | None = Field(None, ge=1)  # supernet epochs of this stage (default: oneshot.epochs)
    strategy: Strategy | None = None  # default: the config's strategy


class CoarseToFine(_Strict):
    """Stages of one-shot search, each over its own supernet with earlier choices fixed
    (``search/coarse_to_fine.py``); the last stage's front is the search's front."""

    stages: list[Stage] = Field(..., min_length=1)
    start_from: str | None = None  # a preset of the space for dimensions not chosen yet (default: its defaults)
    select_by: str | None = None  # the objective a stage's choice is best on (default: the first)
    limits: dict[str, float] = Field(default_factory=dict)  # metric -> upper bound a stage's choice must meet
    warm_start: bool = True  # a stage's supernet starts from the previous stage's weights


class ExperimentConfig(_Strict):
    name: str = Field(..., min_length=1)
    space: str
    fixed: dict[str, Any] = Field(default_factory=dict)
    restrict: dict[str, Any] = Field(default_factory=dict)  # label -> subset of choices or [low, high]
    space_options: dict[str, Any] = Field(default_factory=dict)  # builder options, also given to the space's workloads_fn
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(name="val_accuracy", direction="maximize"), Objective(name="energy_mj", direction="minimize")],
        min_length=1,
    )
    strategy: Strategy = Field(default_factory=Strategy)
    budget: Budget = Field(default_factory=Budget)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    evaluator: Evaluator = Field(default_factory=Evaluator)
    hardware: Hardware = Field(default_factory=Hardware)
    constraints: list[str] = Field(default_factory=list)
    reference_point: dict[str, float] = Field(default_factory=dict)
    seed: int = 0
    workers: int = Field(2, ge=1)
    executor: Literal["ray", "local"] = "ray"
    address: str | None = None
    resources: Resources = Field(default_factory=Resources)
    mlflow: Tracking = Field(default_factory=Tracking)
    out: str | None = None
    save_weights: bool = True  # each trained candidate's weights become MLflow artifacts (abacus export)
    retrain: Retrain | None = None
    oneshot: OneShot | None = None
    coarse_to_fine: CoarseToFine | None = None

    @field_validator("name")
    @classmethod
    def _name_is_a_path_component(cls, v: str) -> str:
        if "/" in v or v in (".", ".."):
            raise ValueError("a name without '/'")
        return v

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.name

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.name

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]


# -- loading -------------------------------------------------------------------------------

def load_config(path: str | Path | None, overrides: list[str] = (), **cli: Any) -> ExperimentConfig:
    """YAML file + ``key=value`` overrides (dotted keys, YAML values) + CLI flags, fully checked."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("CONFIG", "an existing YAML file", str(p))
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError) as exc:
            raise ConfigError("CONFIG", "a readable UTF-8 YAML file", f"{p} ({type(exc).__name__})") from None
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
            raise ConfigError("CONFIG", "valid YAML", f"{p}: {first}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("CONFIG", "a YAML mapping at the top level", type(loaded).__name__)
        raw = loaded
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", "key=value", item)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
            raise ConfigError(f"--set {key.strip()}", "a YAML value", f"{value} ({first})") from None
        _set_dotted(raw, key.strip(), parsed)
    for key, value in cli.items():
        if value is not None:
            _set_dotted(raw, key, value)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc) from None
    check_names(cfg)
    return cfg


_LABEL_KEYED = ("fixed", "restrict")
FINITE_STRATEGIES = ("grid", "bruteforce")
MAX_GRID = 100_000


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    if parts[0] in _LABEL_KEYED and len(parts) > 2:
        parts = [parts[0], ".".join(parts[1:])]  # dimension labels contain dots themselves
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(".".join(parts[: i + 1]), "a mapping to set a sub-key in", nxt)
        node = nxt
    node[parts[-1]] = value


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    key = ".".join(str(x) for x in err["loc"]) or "CONFIG"
    msg = err["msg"]
    kind = err["type"]
    if kind == "missing":
        return ConfigError(key, "a value (the key is required)", "nothing")
    if kind == "extra_forbidden":
        return ConfigError(key, "no such key (check the spelling)", err.get("input"))
    expected = msg[0].lower() + msg[1:] if msg else "a valid value"
    for prefix in ("input should be ", "value error, "):
        if expected.startswith(prefix):
            expected = expected[len(prefix):]
    return ConfigError(key, expected, err.get("input"))


def check_names(cfg: ExperimentConfig) -> None:
    """Names that only the registries know: space, fixed dims, strategy, data set, device, objectives."""
    from spaces import UnknownNameError, get_space

    from search.strategies import STRATEGIES

    try:
        space = get_space(cfg.space)
    except UnknownNameError as exc:
        raise ConfigError("space", "a registered space", f"{cfg.space!r} ({exc})") from None
    for label, value in cfg.restrict.items():
        try:
            space.restricted({label: value})
        except ValueError as exc:
            raise ConfigError(f"restrict.{label}", "a subset of the dimension's choices or [low, high] inside its range", f"{value!r} ({exc})") from None
    space = space.restricted(cfg.restrict)
    if cfg.space_options:
        check_space_options(space, cfg.space_options)
    for label, value in cfg.fixed.items():
        if label not in space.labels:
            raise ConfigError(f"fixed.{label}", f"a dimension of {cfg.space!r} ({', '.join(space.labels)})", label)
        problem = space[label].check(value)
        if problem:
            raise ConfigError(f"fixed.{label}", f"a value in {space[label].domain()}", value)
    if cfg.strategy.name not in STRATEGIES:
        raise ConfigError("strategy.name", f"one of {', '.join(STRATEGIES.names())}", cfg.strategy.name)
    if cfg.strategy.name in FINITE_STRATEGIES:
        from spaces import FloatRange

        from search.adapter import reachable

        floats = [d.label for d in space.dimensions if isinstance(d, FloatRange) and d.label not in cfg.fixed and reachable(d, cfg.fixed)]
        if floats:
            raise ConfigError("fixed", f"values for the float dimensions, which strategy {cfg.strategy.name!r} cannot enumerate", ", ".join(floats))
        if cfg.strategy.name == "grid":
            import math

            from search.adapter import search_space_grid

            size = math.prod(len(v) for v in search_space_grid(space, cfg.fixed).values())
            if size > MAX_GRID:
                raise ConfigError("fixed", f"enough fixed dimensions for a grid of at most {MAX_GRID:,} points (Optuna's GridSampler lists them all)", f"{size:,} points")
    import evaluators

    if cfg.evaluator.function is not None:
        from spaces import resolve

        try:
            resolve(cfg.evaluator.function)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError("evaluator.function", "an importable 'package.module:function'", f"{cfg.evaluator.function} ({exc})") from None
    if cfg.evaluator.data not in evaluators.list_datasets():
        raise ConfigError("evaluator.data", f"one of {', '.join(evaluators.list_datasets())}", cfg.evaluator.data)
    from search.splits import check_data_kwargs

    check_data_kwargs(cfg)
    if cfg.evaluator.options and cfg.evaluator.function is None:
        data_task = evaluators.task_of_data(cfg.evaluator.data)
        allowed = data_task.options  # what the task's evaluator accepts (evaluators.tasks.Task.options)
        for key in cfg.evaluator.options:
            if key not in allowed:
                raise ConfigError(f"evaluator.options.{key}", f"an option of the {data_task.name} evaluator ({', '.join(allowed) or 'none'})", key)
    import hw_cost
    from hw_cost.constraints import parse_constraint

    try:
        hw_cost.get_device(cfg.hardware.device)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise ConfigError("hardware.device", f"a device of hw_cost.list_devices() or a YAML path ({exc})", cfg.hardware.device) from None
    task = evaluators.task_of_data(cfg.evaluator.data)
    eval_metrics = tuple(m for m in task.metrics if m != "train_loss") + COMMON_EVAL_METRICS
    known = eval_metrics + COST_FIELDS
    names = [o.name for o in cfg.objectives]
    for i, name in enumerate(names):
        if name not in known:
            raise ConfigError(f"objectives.{i}.name", f"one of {', '.join(known)} (metrics of the {task.name} task of data {cfg.evaluator.data!r})", name)
        if names.index(name) != i:
            raise ConfigError(f"objectives.{i}.name", "each objective once", name)
    for i, text in enumerate(cfg.constraints):
        try:
            c = parse_constraint(text)
        except ValueError as exc:
            raise ConfigError(f"constraints.{i}", f"'FIELD OP NUMBER' or 'FIELD OP F * device' ({exc})", text) from None
        if c.field not in CONSTRAINABLE:
            raise ConfigError(f"constraints.{i}", f"a cost field known before training ({', '.join(CONSTRAINABLE)})", c.field)
        if c.relative and c.field not in ("lut", "ff", "dsp", "bram"):
            raise ConfigError(f"constraints.{i}", "'* device' only on a resource (lut, ff, dsp, bram)", text)
    if cfg.scheduler.name != "none":
        from search.worker import STATIC_MODEL_METRICS

        rankable = task.per_epoch + COST_FIELDS + STATIC_MODEL_METRICS
        for i, name in enumerate(names):
            if name not in rankable:
                raise ConfigError(f"objectives.{i}.name", f"an objective known after every epoch for early stopping ({', '.join(rankable)})", name)
        if cfg.scheduler.name != "mo-asha" and len(names) > 1:
            raise ConfigError("scheduler.name", "'mo-asha' for a multi-objective search (Optuna's pruners take one objective)", cfg.scheduler.name)
        if cfg.scheduler.min_epochs >= cfg.budget.epochs:
            raise ConfigError("scheduler.min_epochs", f"fewer than budget.epochs ({cfg.budget.epochs}) so that a rung exists", cfg.scheduler.min_epochs)
    for name in cfg.reference_point:
        if name not in names:
            raise ConfigError(f"reference_point.{name}", f"an objective name ({', '.join(names)})", name)
    if cfg.oneshot is not None:
        from search.oneshot import check_oneshot

        check_oneshot(cfg, space)
    if cfg.coarse_to_fine is not None:
        from search.coarse_to_fine import check_coarse_to_fine

        check_coarse_to_fine(cfg, space)


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def check_space_options(space, options: dict[str, Any]) -> None:
    """Each ``space_options`` key must be a named keyword of the space's builder (a typo would
    otherwise vanish into its ``**kwargs``)."""
    import inspect

    from spaces import resolve

    if space.builder is None:
        raise ConfigError("space_options", f"no options (space {space.name!r} has no builder)", sorted(options))
    params = inspect.signature(resolve(space.builder)).parameters
    named = sorted(n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("arch", "input_shape", "num_classes"))
    for key in options:
        if key not in named:
            raise ConfigError(f"space_options.{key}", f"an option of the builder of {space.name!r} ({', '.join(named) or 'none'})", key)
