"""How good a candidate is: Lightning modules, data modules, technique recipes, metrics.

Front door: :func:`evaluate`. Imports run ``spaces <- supernets <- evaluators <- search``; this
package imports no op classes -- recipes find the modules they act on by the methods they define.
"""

from .callbacks import (
    AdaptiveLRCallback,
    EpochReporter,
    ProgressScheduleCallback,
    default_recipe_callbacks,
)
from .classification import ClassificationModule
from .data import get_datamodule, list_datasets, register_datamodule
from .errors import NonFiniteLossError
from .evaluate import evaluate
from .metrics import count_macs, count_params

__all__ = [
    "evaluate",
    "ClassificationModule",
    "NonFiniteLossError",
    "EpochReporter",
    "AdaptiveLRCallback",
    "ProgressScheduleCallback",
    "default_recipe_callbacks",
    "get_datamodule",
    "list_datasets",
    "register_datamodule",
    "count_macs",
    "count_params",
]
