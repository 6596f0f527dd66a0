"""Our own Optuna samplers, for what Optuna does not provide (see each module for why)."""

from search.samplers.evolution import RegularizedEvolutionSampler
from search.samplers.ranking import pick_best, rank_for_selection
from search.samplers.staged import StagedSampler

__all__ = ["RegularizedEvolutionSampler", "StagedSampler", "pick_best", "rank_for_selection"]
