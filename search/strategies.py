"""Strategies by name: Optuna's samplers, used as Optuna provides them.

Each entry is a factory ``(config, space) -> optuna.samplers.BaseSampler``; options from the
config's ``strategy.options`` are passed to the sampler's constructor, so every Optuna knob is
reachable without code.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna

from spaces import SearchSpace
from spaces.registry import Registry

from search.budget import planned_trials

STRATEGIES: Registry = Registry("strategy", entry_point_group="abacus.strategies")


def register_strategy(name: str) -> Callable:
    return STRATEGIES.decorator(name)


# Samplers whose ``constraints_func`` ranks an infeasible trial by its violation alone: the engine
# tells them infeasible candidates (with their violation amounts) so they learn the boundary.
CONSTRAINED_STRATEGIES = ("tpe", "nsga2", "nsga3")


def constraint_values(count: int, trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna ``constraints_func``: the violation amounts the engine stored (<= 0 satisfied)."""
    values = trial.user_attrs.get("constraints")
    return [float(v) for v in values] if isinstance(values, list) and len(values) == count else [0.0] * count


def make_sampler(cfg: Any, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import functools

    factory = STRATEGIES.get(cfg.strategy.name)
    options = dict(cfg.strategy.options)
    if cfg.constraints and cfg.strategy.name in CONSTRAINED_STRATEGIES:
        options.setdefault("constraints_func", functools.partial(constraint_values, len(cfg.constraints)))
    try:
        return factory(cfg, space, options, cfg.seed)
    except TypeError as exc:
        from search.errors import ConfigError

        raise ConfigError("strategy.options", f"options accepted by strategy {cfg.strategy.name!r}", f"{cfg.strategy.options} ({exc})") from None


@register_strategy("tpe")
def _tpe(cfg, space, options, seed):
    options.setdefault("multivariate", True)
    options.setdefault("n_startup_trials", min(10, max(2, planned_trials(cfg) // 3)))
    return optuna.samplers.TPESampler(seed=seed, **options)


@register_strategy("nsga2")
def _nsga2(cfg, space, options, seed):
    options.setdefault("population_size", max(4, min(50, planned_trials(cfg) // 3)))
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


@register_strategy("nsga3")
def _nsga3(cfg, space, options, seed):
    options.setdefault("population_size", max(4, min(50, planned_trials(cfg) // 3)))
    return optuna.samplers.NSGAIIISampler(seed=seed, **options)


@register_strategy("random")
def _random(cfg, space, options, seed):
    return optuna.samplers.RandomSampler(seed=seed, **options)


@register_strategy("qmc")
def _qmc(cfg, space, options, seed):
    return optuna.samplers.QMCSampler(seed=seed, **options)


@register_strategy("gp")
def _gp(cfg, space, options, seed):
    return optuna.samplers.GPSampler(seed=seed, **options)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for a driver-owned ask/tell loop.

    Optuna's GridSampler calls ``study.stop()`` once every grid point was tried, which is only
    allowed inside ``study.optimize``; here the budget ends the search instead (set
    ``budget.trials`` to the grid size, which the config check reports)."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


@register_strategy("grid")
def _grid(cfg, space, options, seed):
    from search.adapter import search_space_grid

    return AskTellGridSampler(search_space_grid(space, cfg.fixed), seed=seed, **options)


@register_strategy("bruteforce")
def _bruteforce(cfg, space, options, seed):
    return optuna.samplers.BruteForceSampler(seed=seed, **options)


@register_strategy("evolution")
def _evolution(cfg, space, options, seed):
    from search.samplers import RegularizedEvolutionSampler

    options.setdefault("population_size", max(2, min(20, planned_trials(cfg) // 3)))
    options.setdefault("sample_size", max(1, options["population_size"] // 4))
    return RegularizedEvolutionSampler(seed=seed, **options)


@register_strategy("staged")
def _staged(cfg, space, options, seed):
    """options: stages (list of {dims, trials, sampler}), primary (objective index or null)."""
    from search.samplers import StagedSampler

    def inner(name: str) -> optuna.samplers.BaseSampler:
        if name == "staged" or name not in STRATEGIES:
            raise ValueError(f"a stage's sampler must be one of {', '.join(n for n in STRATEGIES.names() if n != 'staged')}, got {name!r}")
        return STRATEGIES.get(name)(cfg, space, {}, seed)

    defaults = {**space.default(), **cfg.fixed}
    try:
        return StagedSampler(options.pop("stages", []), defaults, inner, **options)
    except ValueError as exc:
        from search.errors import ConfigError

        raise ConfigError("strategy.options.stages", "a list of {dims: [patterns], trials: n, sampler: name}", str(exc)) from None
