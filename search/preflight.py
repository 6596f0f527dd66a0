"""Everything a search checks before it writes anything: config values the schema cannot judge
alone, the data, the sampler, the resources against the machine or cluster, and on resume the
run directory's files. Then (``open_run_dir``) the directory and its lock.

Why a separate pass: a search that fails half-way through its set-up used to leave a run
directory, a config.yaml and a RUNNING MLflow parent behind, or hang waiting for resources that
never come. Each check here raises one ``PreflightError``/``ConfigError`` line naming the input.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from dataclasses import dataclass
from typing import Any, Callable

from search.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed_everything's largest seed
MAX_EPOCHS = 100_000
MAX_TRIALS = 10_000_000
ADDRESS_TIMEOUT_S = 5.0
RUN_MARKERS = ("config.yaml", "run.json", "study.journal")  # what makes a directory an earlier search's


class PreflightError(ValueError):
    """A problem found before the search starts: one line naming the input (CLI exit 2)."""


@dataclass
class Prepared:
    """What the checks built and the search goes on with (nothing is built twice)."""

    space: Any
    input_shape: tuple[int, ...]
    num_classes: int
    sampler: Any
    task: dict[str, Any] | None = None  # what the builder takes from the data (``builder_kwargs``: an SR scale, ...)
    split: dict[str, Any] | None = None  # the data split's identity (``search.splits.describe``)
    run: dict[str, Any] | None = None  # run.json, on resume
    torn_bytes: int = 0  # length of a torn last journal line, cut before appending


def check_values(cfg) -> None:
    """Values that pass the schema but cannot work: the name as a path and run name, seeds, sizes."""
    bad = [c for c in cfg.name if ord(c) < 32 or c in "\\\x7f"]
    if bad or len(cfg.name) > 200:
        raise ConfigError("name", "a name of at most 200 printable characters without '/' or '\\' (it names the run directory)", cfg.name)
    if cfg.out is not None and ("\x00" in cfg.out):
        raise ConfigError("out", "a directory path", cfg.out)
    from search.retrain import SEED_STRIDE

    trials = cfg.budget.trials if cfg.budget.trials is not None else MAX_TRIALS  # a time-only budget: no trial count
    spread = 10 * trials + (cfg.retrain.seed_offset + SEED_STRIDE * int(getattr(cfg.retrain, "seeds", 1)) if cfg.retrain is not None else 0)
    if not 0 <= cfg.seed <= SEED_MAX - spread:
        raise ConfigError("seed", f"an integer in [0, {SEED_MAX - spread}] (trial k trains with seed + k; numpy and Lightning take seeds below 2**32)", cfg.seed)
    if cfg.budget.epochs > MAX_EPOCHS:
        raise ConfigError("budget.epochs", f"at most {MAX_EPOCHS:,} epochs", cfg.budget.epochs)
    if cfg.budget.trials is not None and cfg.budget.trials > MAX_TRIALS:
        raise ConfigError("budget.trials", f"at most {MAX_TRIALS:,} trials", cfg.budget.trials)
    pe = cfg.hardware.pe_array
    if pe is not None and min(pe) < 1:
        raise ConfigError("hardware.pe_array", "two positive integers [P_in, P_out]", list(pe))
    for key, value in (("evaluator.lr", cfg.evaluator.lr), ("evaluator.weight_decay", cfg.evaluator.weight_decay),
                       ("resources.cpus_per_trial", cfg.resources.cpus_per_trial), ("resources.gpus_per_trial", cfg.resources.gpus_per_trial)):
        if not math.isfinite(value):
            raise ConfigError(key, "a finite number", value)


def check_data(cfg) -> tuple[tuple[int, ...], int, dict[str, Any] | None, dict[str, Any]]:
    """Read the data set and its split once: the path exists and its format is readable. A data
    set with a torch-free probe (``evaluators.data.registry.PROBES``) is read without importing
    torch or Lightning (seconds the driver would spend before its first trial); any other is built
    as a data module and set up."""
    import evaluators

    from evaluators.data.registry import probe_datamodule, task_name_of
    from search import splits

    ev = cfg.evaluator
    try:
        kwargs = dict(seed=splits.split_seed(cfg), batch_size=ev.batch_size, **ev.data_kwargs)
        probed = probe_datamodule(ev.data, **kwargs)
        if probed is not None:
            shape, classes, task, split = tuple(probed.input_shape), int(probed.num_classes), dict(probed.builder_kwargs), dict(probed.split)
            data_task = task_name_of(ev.data)
        else:
            dm = evaluators.get_datamodule(ev.data, **kwargs)
            dm.setup("fit")
            shape, classes = tuple(int(x) for x in dm.input_shape), int(dm.num_classes)
            builder_kwargs = getattr(dm, "builder_kwargs", None)
            task = builder_kwargs() if callable(builder_kwargs) else None
            split = splits.describe(dm)
            data_task = getattr(dm, "task", "classification")
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("evaluator.data_kwargs" if ev.data_kwargs else "evaluator.data",
                          f"data set {ev.data!r} readable with these options", f"{ev.data_kwargs} ({detail[:300]})") from None
    if not shape or min(shape) < 1 or (classes < 1 and data_task == "classification"):
        raise ConfigError("evaluator.data", "a data set with a non-empty input shape and at least one class", f"{shape}, {classes} classes")
    return shape, classes, task, split


def check_sampler(cfg, space) -> Any:
    """Construct the sampler with ``strategy.options`` (Optuna checks its own arguments)."""
    import optuna

    from search.adapter import suggest_arch
    from search.strategies import make_sampler

    try:
        sampler = make_sampler(cfg, space)
        # Many samplers read their options only when asked: one ask on a throw-away in-memory
        # study with a second instance (the real one's random state stays untouched).
        probe = optuna.create_study(directions=cfg.directions, sampler=make_sampler(cfg, space))
        suggest_arch(probe.ask(), space, cfg.fixed)
        return sampler
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("strategy.options", f"options accepted by strategy {cfg.strategy.name!r}", f"{cfg.strategy.options} ({detail[:300]})") from None


def check_resources(cfg) -> None:
    """What a trial asks for must exist, or the search would wait forever for it."""
    res = cfg.resources
    if cfg.executor == "local" or not cfg.address:
        cpus = os.cpu_count() or 1
        if cfg.executor == "ray" and res.cpus_per_trial > cpus:
            raise ConfigError("resources.cpus_per_trial", f"at most this machine's {cpus} CPUs (a trial asking for more is never placed)", res.cpus_per_trial)
        if res.gpus_per_trial > 0:
            gpus = _local_gpus()
            if math.ceil(res.gpus_per_trial) > gpus:
                raise ConfigError("resources.gpus_per_trial", f"at most this machine's {gpus} GPU(s) (a trial asking for more is never placed)", res.gpus_per_trial)
    if cfg.executor == "ray" and cfg.address and cfg.address != "auto":
        check_address(cfg.address)


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install counts as no GPU
        return 0


def check_address(address: str, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """A ``host:port`` cluster address answers within ``timeout_s`` (Ray itself retries for minutes)."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PreflightError(f"--address: expected 'auto' or host:port of a Ray cluster, found {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PreflightError(f"--address: expected a Ray cluster answering at {target}, found none within {timeout_s:g} s ({exc.strerror or type(exc).__name__})") from None


def check_cluster(cpus_per_trial: float, gpus_per_trial: float, ray) -> None:
    """After joining a cluster: some node must hold one trial's CPUs and GPUs."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus_per_trial and n.get("GPU", 0) >= gpus_per_trial for n in nodes):
        most_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
        most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
        raise ConfigError("resources", f"a trial's CPUs/GPUs that one node of the cluster has (largest: {most_cpu:g} CPUs, {most_gpu:g} GPUs)",
                          {"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial})


def check_out_dir(cfg, *, resume: bool, overwrite: bool) -> None:
    """The run directory: a directory, not locked by a live search, and new unless resumed or overwritten."""
    from search.runlock import RunLockedError, holder_alive, read_owner

    out = cfg.out_dir
    key = "out" if cfg.out else "name"
    if out.exists() and not out.is_dir():
        raise ConfigError(key, "a directory for the run (or a path to create one at)", f"{out} (an existing file)")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise ConfigError(key, "a writable place for the run directory", f"{out} ({parent} is not a writable directory)")
    if not out.is_dir():
        return
    owner = read_owner(out)
    if owner is not None and holder_alive(owner) is not False:
        who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
        raise RunLockedError(f"run directory {str(out)!r}: expected no other owner, found it in use by {who}; wait for that search to end or stop it")
    earlier = [m for m in RUN_MARKERS if (out / m).exists()]
    if earlier and not resume and not overwrite:
        raise PreflightError(f"run directory {str(out)!r}: expected a new directory, found an earlier search's {', '.join(earlier)}; "
                             f"continue it with 'abacus resume {out}' or pass --overwrite to start again")


def check_resume_files(cfg) -> tuple[dict[str, Any], int]:
    """run.json names a parent run that exists in its store; the journal holds this study and
    at most a torn last line (returned as its length, cut later)."""
    from search.journal import scan_journal
    from search.runs import RunLookupError, client_for

    out = cfg.out_dir
    path = out / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreflightError(f"{path}: expected JSON naming the parent run, found {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}") from None
    if not isinstance(run, dict) or not all(isinstance(run.get(k), str) and run.get(k) for k in ("parent_run_id", "tracking_uri")):
        raise PreflightError(f"{path}: expected a JSON object with parent_run_id and tracking_uri strings, found {str(run)[:120]!r}")
    torn = scan_journal(out / "study.journal", cfg.name, len(cfg.objectives))
    try:
        client = client_for(run["tracking_uri"])
        client.get_run(run["parent_run_id"])
    except RunLookupError as exc:
        raise PreflightError(f"{path}: {exc}") from None
    except Exception:
        raise PreflightError(f"{path}: expected parent run {run['parent_run_id']} in {run['tracking_uri']}, found none") from None
    return run, torn


def check_reference(cfg) -> None:
    """Every objective needs a hypervolume bound the problem fixes (``search.problem``) or the config gives."""
    from search.problem import undeclarable

    missing = undeclarable(cfg.objective_names, cfg.reference_point)
    if missing:
        raise ConfigError(f"reference_point.{missing[0]}", f"a value: the problem fixes no hypervolume bound for {missing[0]}", "none")


def prepare(cfg, *, resume: bool, overwrite: bool = False, quick_checks_passed: Callable[[], None] | None = None) -> Prepared:
    """Every check, in the order a user fixes things; nothing is written. ``quick_checks_passed``
    is called once the checks that take milliseconds passed, before the data set is read (the
    engine starts Ray there, which writes nothing into the run directory, so the two overlap)."""
    from spaces import get_space

    check_values(cfg)
    check_reference(cfg)
    check_resources(cfg)
    check_out_dir(cfg, resume=resume, overwrite=overwrite)
    run, torn = check_resume_files(cfg) if resume else (None, 0)
    space = get_space(cfg.space).restricted(cfg.restrict).with_options(cfg.space_options)
    if quick_checks_passed is not None:
        quick_checks_passed()
    shape, classes, task, split = check_data(cfg)
    sampler = check_sampler(cfg, space)
    return Prepared(space, shape, classes, sampler, task, split, run, torn)


def open_run_dir(cfg, *, resume: bool, overwrite: bool):
    """Create the directory and take its lock before writing anything in it; an overwritten
    search's files are removed only once the lock is ours. Returns the held ``RunLock``."""
    from search.runlock import LOCK_FILE, RunLock

    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, take_stale=resume or overwrite).acquire()
    if overwrite and not resume and any((out / m).exists() for m in RUN_MARKERS):
        for entry in out.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return lock
