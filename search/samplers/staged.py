"""Coarse-to-fine staged search: one group of dimensions at a time, earlier groups fixed.

Why ours: the GAN-generator NAS paper (arXiv 2104.09223) searches the path, then the operators,
then the channels, each stage with the earlier choices fixed to the best found so far; Optuna
has no staged sampler. Stages are ``{"dims": [label patterns], "trials": n, "sampler": name}``;
patterns use shell wildcards (``stage*.op``). During a stage, its dimensions come from the
stage's inner sampler, dimensions of earlier stages from the best complete trial of the earlier
stages (the front member best on ``primary`` objective, or NSGA-II order if ``primary`` is
null), and dimensions of later stages keep their defaults. After the last stage, the last
stage's sampler continues.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from search.samplers.ranking import pick_best

_STAGE = "staged:stage"


class StagedSampler(BaseSampler):
    def __init__(self, stages: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any], make_inner: Callable[[str], BaseSampler],
                 primary: int | None = 0) -> None:
        if not stages:
            raise ValueError("strategy 'staged' needs at least one stage, got none")
        self.stages = []
        for i, st in enumerate(stages):
            dims, trials = st.get("dims"), st.get("trials")
            if not dims or not isinstance(dims, (list, tuple)):
                raise ValueError(f"stage {i}: 'dims' must be a non-empty list of label patterns, got {dims!r}")
            if not isinstance(trials, int) or trials < 1:
                raise ValueError(f"stage {i}: 'trials' must be an integer >= 1, got {trials!r}")
            self.stages.append({"dims": list(dims), "trials": trials, "sampler": make_inner(st.get("sampler", "tpe"))})
        self.defaults = dict(defaults)
        self.primary = primary

    def stage_of(self, number: int) -> int:
        end = 0
        for i, st in enumerate(self.stages):
            end += st["trials"]
            if number < end:
                return i
        return len(self.stages) - 1

    def stage_index_of_param(self, name: str) -> int | None:
        for i, st in enumerate(self.stages):
            if any(fnmatch.fnmatch(name, pat) for pat in st["dims"]):
                return i
        return None

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study._storage.set_trial_system_attr(trial._trial_id, _STAGE, self.stage_of(trial.number))

    def _best_before(self, study: optuna.Study, stage: int) -> FrozenTrial | None:
        first = sum(st["trials"] for st in self.stages[:stage])
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number < first]
        if not done:
            return None
        directions = ["maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize" for d in study.directions]
        return pick_best(done, directions, self.primary)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        stage = trial.system_attrs.get(_STAGE, self.stage_of(trial.number))
        owner = self.stage_index_of_param(param_name)
        if owner == stage:
            return self.stages[stage]["sampler"].sample_independent(study, trial, param_name, param_distribution)
        if owner is not None and owner < stage:
            best = self._best_before(study, stage)
            if best is not None and param_name in best.params:
                return best.params[param_name]
        if param_name in self.defaults:
            return self.defaults[param_name]
        return self.stages[stage]["sampler"].sample_independent(study, trial, param_name, param_distribution)
