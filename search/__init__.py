"""What to try next, where, and what is remembered: strategies, executors, MLflow, the CLI."""

from search.config import ExperimentConfig, load_config
from search.errors import ConfigError
from search.pareto import hypervolume, non_dominated_mask

__all__ = ["ConfigError", "ExperimentConfig", "hypervolume", "load_config", "non_dominated_mask"]
