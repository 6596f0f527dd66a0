"""How good a candidate is: Lightning modules (classification, image-to-image, super-resolution),
data modules, technique recipes, metrics.

Front door: :func:`evaluate`. Imports run ``spaces <- supernets <- evaluators <- search``; this
package imports no op classes -- recipes find the modules they act on by the methods they define.
"""

from .callbacks import (
    AdaptiveLRCallback,
    DataCostCallback,
    EpochReporter,
    ProgressScheduleCallback,
    default_recipe_callbacks,
)
from .classification import ClassificationModule
from .data import get_datamodule, list_datasets, register_datamodule
from .errors import NonFiniteLossError
from .evaluate import evaluate
from .image2image import ImageToImageModule, SuperResolutionModule
from .metrics import count_macs, count_params, rgb_to_y
from .tasks import TASKS, Task, get_task, task_of_data

__all__ = [
    "evaluate",
    "ClassificationModule",
    "ImageToImageModule",
    "SuperResolutionModule",
    "DataCostCallback",
    "Task",
    "TASKS",
    "get_task",
    "task_of_data",
    "rgb_to_y",
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
