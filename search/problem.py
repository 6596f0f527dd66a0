"""The problem a search solves, and the hypervolume reference point that the problem fixes.

Hypervolumes are comparable only on one reference point. A point taken from a search's own
results (its worst trial) differs from search to search, so two searches of one problem would be
ranked by how bad their worst trials were. Here the point is fixed *before* training, by the
problem alone:

- cost objectives (energy, latency, power, resources; params and MACs): the worst value over the
  search space on the configured device, found with the cost model (no training) by coordinate
  ascent from the numerically largest architecture (every non-numeric choice, both ends of a
  numeric dimension; at most 64 architectures costed, 6 for spaces whose networks must be built
  and traced to be costed; small spaces are enumerated). The ascent finds the costliest architecture of spaces whose cost grows
  monotonically in each dimension (widths, depths, bits, op kinds); for others it is a local
  maximum, so ``COST_HEADROOM`` (10 %) is added on top. A trial beyond it adds no volume.
- quality objectives: a declared bound: chance level for accuracy (1 / classes) and for the
  cross-entropy loss (ln classes) of classifiers; 0 dB for PSNR, 0 for SSIM and throughput.
- anything in the config's ``reference_point`` replaces the above (and is part of the key).

``Problem.key`` hashes what makes two searches comparable: the space after ``restrict`` and
``fixed``, the objectives, constraints, device and hardware settings, the data (set, options,
input shape, classes) and the reference point itself. Same key => same reference point, so the
``hypervolume`` metrics of any two parents with one key may share an axis. The strategy, seed,
budget and worker count are *not* part of it: they are what one compares.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

COST_HEADROOM = 0.10
MAX_EVALS = 64  # architectures costed when the space describes its workloads (analytic, fast)
MAX_EVALS_BUILT = 6  # when each one must be built and traced (a large TNT takes seconds to minutes)
TAG_PROBLEM = "abacus.problem"
TAG_REFERENCE = "abacus.reference."
# data options that say where the data is or how it is batched, not which problem it poses
DATA_OPTIONS_IGNORED = ("batch_size", "num_workers", "root", "seed")
COST_OBJECTIVES = ("energy_mj", "latency_ms", "power_w", "lut", "ff", "dsp", "bram")
MODEL_OBJECTIVES = ("params", "macs", "size_mb", "size_mib", "file_mb")
TAG_METRIC = "abacus.metric."  # what the quality values depend on beyond the data (e.g. the FID extractor)


class ProblemError(ValueError):
    """The reference point of an objective cannot be fixed by the problem; one line for the CLI."""


@dataclass
class Problem:
    key: str
    description: dict[str, Any]
    names: list[str]
    directions: list[str]
    reference: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)
    worst_arch: dict[str, Any] | None = None

    @property
    def reference_point(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.reference)}

    def tags(self) -> dict[str, str]:
        """What the parent run carries: the key, each coordinate of the point and where it came from,
        and the metric identity (``abacus.metric.fid.extractor``, ...) when the task has one."""
        out = {TAG_PROBLEM: self.key}
        for k, v in self.description.get("metric_identity", {}).items():
            out[f"{TAG_METRIC}{k}"] = str(v)
        for n, v in self.reference_point.items():
            out[f"{TAG_REFERENCE}{n}"] = repr(v)
            out[f"{TAG_REFERENCE}{n}.source"] = self.sources.get(n, "")[:500]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "reference_point": self.reference_point, "sources": self.sources,
                "description": self.description, "worst_arch": self.worst_arch}


def reference_from_tags(tags: Mapping[str, str], names: Sequence[str]) -> dict[str, float] | None:
    """The reference point a parent run recorded (``None`` for searches from before it was recorded)."""
    try:
        return {n: float(tags[f"{TAG_REFERENCE}{n}"]) for n in names}
    except (KeyError, ValueError):
        return None


def problem_key(description: Mapping[str, Any]) -> str:
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def declared_bound(name: str, num_classes: int) -> tuple[float, str] | None:
    """The bound a quality objective declares by itself, or ``None`` when it has none."""
    if name in ("val_accuracy", "best_val_accuracy") and num_classes >= 2:
        return 1.0 / num_classes, f"chance level (1/{num_classes} classes)"
    if name == "val_loss" and num_classes >= 2:
        return math.log(num_classes), f"cross-entropy of a uniform guess (ln {num_classes})"
    if name == "val_psnr":
        return 0.0, "declared bound 0 dB"
    if name in ("val_ssim", "throughput_fps", "val_map", "val_map50", "best_val_map", "best_val_map50"):
        return 0.0, "declared bound 0"
    return None


def undeclarable(names: Sequence[str], configured: Mapping[str, float]) -> list[str]:
    """Objectives whose reference neither the problem nor the config fixes (checked before a search)."""
    known = COST_OBJECTIVES + MODEL_OBJECTIVES
    return [n for n in names if n not in configured and n not in known and declared_bound(n, 2) is None]


def worst_over_space(space, fixed: Mapping[str, Any], measure: Callable[[dict], Mapping[str, float]],
                     names: Sequence[str], max_passes: int = 2, max_evals: int = 64) -> tuple[dict[str, float], dict[str, dict]]:
    """Per name, the largest value ``measure`` gives over ``space`` and the architecture where it
    was found: every combination of candidate values when there are at most ``max_evals`` of
    them, else coordinate ascent from the numerically largest architecture (and from it with one
    op kind everywhere), measuring at most ``max_evals`` architectures in all (building and tracing
    a large network takes seconds when the space describes no workloads). ``fixed`` stays fixed."""
    from spaces import Categorical, FloatRange, IntRange

    cache: dict[str, Mapping[str, float] | None] = {}

    def value(arch: dict) -> Mapping[str, float] | None:
        aid = space.arch_id(arch)
        if aid not in cache:
            try:
                cache[aid] = measure(arch)
            except Exception:  # an architecture the cost model cannot cost is no candidate
                cache[aid] = None
        return cache[aid]

    def numeric(dim) -> bool:
        return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dim.choices)

    def candidates(dim) -> list:
        if isinstance(dim, Categorical):  # numeric choices: both ends (sizes grow with them)
            return [min(dim.choices), max(dim.choices)] if numeric(dim) else list(dim.choices)
        if isinstance(dim, (IntRange, FloatRange)):
            return [dim.low, dim.high]
        return []

    # starts: the largest value of every numeric dimension (the costliest network of monotone
    # spaces), and that with one op kind everywhere (costs that need two stages to agree, such as
    # a shared unit, are out of reach of single-coordinate moves)
    free = [d for d in space.dimensions if d.label not in fixed]
    top = {d.label: (d.high if isinstance(d, (IntRange, FloatRange)) else max(d.choices))
           for d in free if isinstance(d, (IntRange, FloatRange)) or (isinstance(d, Categorical) and numeric(d))}
    kinds = list(dict.fromkeys(c for d in free if isinstance(d, Categorical) and not numeric(d) for c in d.choices))
    starts = [space.complete({**top, **fixed})]
    starts += [space.complete({**top, **{d.label: k for d in free if isinstance(d, Categorical) and not numeric(d) and k in d.choices}, **fixed})
               for k in kinds]
    free = [d for d in free if any(d.label in st for st in starts)]  # never-active dimensions add nothing
    grid = math.prod(len(candidates(d)) for d in free)
    if grid <= max_evals:  # small enough to measure every combination of the candidate values
        starts = [space.complete({**top, **dict(zip([d.label for d in free], combo)), **fixed})
                  for combo in itertools.product(*(candidates(d) for d in free))]
    worst: dict[str, float] = {}
    where: dict[str, dict] = {}
    for name in names:
        best, arch = -math.inf, starts[0]
        for start in starts:
            if space.problems(start):
                continue
            if len(cache) >= max_evals and space.arch_id(start) not in cache:
                break
            v = (value(start) or {}).get(name, -math.inf)
            if v > best:
                best, arch = v, start
        for _ in range(max_passes if grid > max_evals else 0):
            grew = False
            for dim in space.dimensions:
                if dim.label in fixed or dim.label not in arch:
                    continue
                for cand in candidates(dim):
                    if len(cache) >= max_evals:
                        break
                    trial = space.complete({**arch, dim.label: cand, **fixed})
                    if space.problems(trial):
                        continue
                    v = (value(trial) or {}).get(name, -math.inf)
                    if v > best:
                        best, arch, grew = v, trial, True
            if not grew:
                break
        if not math.isfinite(best):
            raise ProblemError(f"reference_point.{name}: expected the cost model to cost some architecture of the space, found none it could")
        worst[name], where[name] = float(best), arch
    return worst, where


def describe(cfg, space, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """What identifies the problem (the reference point is added by ``define_problem``)."""
    hw = cfg.hardware
    import evaluators

    identity = evaluators.task_of_data(cfg.evaluator.data).metric_identity(cfg.evaluator.options)
    return {
        # values of metrics measured differently (another FID feature extractor) are another problem
        **({"metric_identity": identity} if identity else {}),
        "space": space.to_dict(),
        "fixed": dict(sorted(cfg.fixed.items())),
        "objectives": [{"name": o.name, "direction": o.direction} for o in cfg.objectives],
        "constraints": sorted(cfg.constraints),
        "hardware": {"device": hw.device, "style": hw.style, "pe_array": list(hw.pe_array) if hw.pe_array else None,
                     "default_bits": hw.default_bits, "mult_impl": hw.mult_impl},
        "data": {"name": cfg.evaluator.data, "input_shape": list(input_shape), "num_classes": int(num_classes),
                 "options": {k: v for k, v in sorted(cfg.evaluator.data_kwargs.items()) if k not in DATA_OPTIONS_IGNORED}},
    }


def define_problem(cfg, space, cost_model, input_shape: Sequence[int], num_classes: int) -> Problem:
    """The problem of ``cfg`` and its reference point, computed before any training."""
    names, dirs = cfg.objective_names, cfg.directions
    configured = dict(cfg.reference_point)
    missing = undeclarable(names, configured)
    if missing:
        raise ProblemError(f"reference_point.{missing[0]}: expected a value (the problem fixes no bound for {missing[0]}), found none")
    ref: dict[str, float] = {}
    sources: dict[str, str] = {}
    worst_arch = None
    cost_names = [n for n in names if n in COST_OBJECTIVES and n not in configured]
    model_names = [n for n in names if n in MODEL_OBJECTIVES and n not in configured]
    if cost_names:
        # a space that describes its workloads is costed in milliseconds; others are built and traced
        evals = MAX_EVALS if space.workloads_fn is not None else MAX_EVALS_BUILT
        worst, where = worst_over_space(space, cfg.fixed, lambda a: cost_model(a)[0], cost_names, max_evals=evals)
        for n in cost_names:
            ref[n] = worst[n] * (1 + COST_HEADROOM)
            sources[n] = f"cost model: worst over the space on {cfg.hardware.device} ({worst[n]:.6g}) + {COST_HEADROOM:.0%}"
        worst_arch = where[cost_names[0]]
    if model_names:
        worst, _ = worst_over_space(space, cfg.fixed, lambda a: model_size(space, a, input_shape, num_classes), model_names,
                                    max_evals=MAX_EVALS_BUILT)
        for n in model_names:
            ref[n] = worst[n] * (1 + COST_HEADROOM)
            sources[n] = f"largest network of the space ({worst[n]:.6g}) + {COST_HEADROOM:.0%}"
    for n in names:
        if n in configured:
            ref[n], sources[n] = float(configured[n]), "config reference_point"
        elif n not in ref:
            bound = declared_bound(n, num_classes)
            assert bound is not None  # undeclarable() ruled this out
            ref[n], sources[n] = bound
    description = {**describe(cfg, space, input_shape, num_classes), "reference_point": {n: ref[n] for n in names}}
    return Problem(key=problem_key(description), description=description, names=list(names), directions=list(dirs),
                   reference=np.array([ref[n] for n in names], dtype=float), sources=sources, worst_arch=worst_arch)


def model_size(space, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> dict[str, float]:
    """Parameters, MACs and sizes in MB of the built network (what the evaluator reports as
    ``params``/``macs``/``size_mb``/``size_mib``/``file_mb``)."""
    import supernets
    from evaluators import count_macs, count_params, model_size as sizes

    model = supernets.build(space, dict(arch), input_shape=tuple(input_shape), num_classes=num_classes)
    return {"params": float(count_params(model)), "macs": float(count_macs(model, tuple(input_shape))), **sizes(model)}
