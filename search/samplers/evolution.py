"""Regularized evolution (Real et al., AAAI 2019, arXiv 1802.01548) as an Optuna sampler.

Why ours: Optuna has no aging evolution. Each new trial copies a parent chosen by tournament
(``sample_size`` random members of the population of the ``population_size`` most recent
complete trials) and mutates exactly one of its parameters; the oldest member leaves the
population as new ones arrive (aging). With several objectives the tournament winner is the
best by non-dominated rank then crowding distance (NSGA-II's order), an extension of the paper,
which is single-objective. Until the population is full, trials are random.
Dimensions that become active only through the mutation are drawn at random.
"""

from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from search.samplers.ranking import rank_for_selection

_PARENT = "evolution:parent"
_MUTATE = "evolution:mutate"


class RegularizedEvolutionSampler(BaseSampler):
    def __init__(self, population_size: int = 20, sample_size: int = 5, seed: int | None = None) -> None:
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ValueError(f"regularized evolution needs population_size >= 2 and 1 <= sample_size <= population_size, got {population_size}, {sample_size}")
        self.population_size, self.sample_size = population_size, sample_size
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng = random.Random()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if len(done) < self.population_size:
            return
        population = sorted(done, key=lambda t: t.number)[-self.population_size:]
        sample = self._rng.sample(population, self.sample_size)
        directions = ["maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize" for d in study.directions]
        parent = sample[rank_for_selection(sample, directions)[0]]
        study._storage.set_trial_system_attr(trial._trial_id, _PARENT, parent.number)
        study._storage.set_trial_system_attr(trial._trial_id, _MUTATE, self._rng.choice(sorted(parent.params)))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        parent_no = trial.system_attrs.get(_PARENT)
        if parent_no is None:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        parent = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, parent_no))
        if param_name == trial.system_attrs.get(_MUTATE) or param_name not in parent.params:
            current = parent.params.get(param_name)
            for _ in range(8):  # a mutation should change the value when the domain allows
                value = self._random.sample_independent(study, trial, param_name, param_distribution)
                if value != current:
                    return value
            return value
        return parent.params[param_name]
