"""How good a candidate is: Lightning modules (classification, image-to-image, super-resolution,
paired GAN translation),
data modules, technique recipes, metrics.

Front door: :func:`evaluate`. Imports run ``spaces <- supernets <- evaluators <- search``; this
package imports no op classes -- recipes find the modules they act on by the methods they define.
"""

import sys
import types

from ._lazy import lazy_getattr

# Loaded on first use (PEP 562): checking a config needs the data-set names, not Lightning
# (whose import costs seconds); everything below imports on first attribute access.
_WHERE = {
    "AdaptiveLRCallback": ".callbacks",
    "EpochReporter": ".callbacks",
    "ProgressScheduleCallback": ".callbacks",
    "default_recipe_callbacks": ".callbacks",
    "ClassificationModule": ".classification",
    "get_datamodule": ".data.registry",
    "list_datasets": ".data.registry",
    "register_datamodule": ".data.registry",
    "NonFiniteLossError": ".errors",
    "evaluate": ".evaluate",
    "count_macs": ".metrics",
    "count_params": ".metrics",
    "model_size": ".metrics",
    "GANModule": ".gan",
    "PatchDiscriminator": ".gan",
    "GANSupernetModule": ".gan",
    "score_generator": ".gan",
    "GenerationMetrics": ".fid",
    "RandomConvFeatures": ".fid",
    "make_extractor": ".fid",
    "extractor_identity": ".fid",
    "load_generator": ".gan_teacher",
    "train_teacher": ".gan_teacher",
    "rgb_to_y": ".metrics",
    "DataCostCallback": ".callbacks",
    "ImageToImageModule": ".image2image",
    "SuperResolutionModule": ".image2image",
    "TASKS": ".tasks",
    "Task": ".tasks",
    "get_task": ".tasks",
    "task_of_data": ".tasks",
}


__getattr__ = lazy_getattr(__name__, _WHERE, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


class _Package(types.ModuleType):
    """The function ``evaluate`` shares its name with its submodule: loading the submodule
    (``import evaluators.evaluate``) makes Python set the package attribute to the module; keep
    the function there instead, as the eager ``from .evaluate import evaluate`` used to."""

    def __setattr__(self, name: str, value) -> None:
        if name == "evaluate" and isinstance(value, types.ModuleType):
            value = value.evaluate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "model_size",
    "GANModule",
    "PatchDiscriminator",
    "GANSupernetModule",
    "score_generator",
    "GenerationMetrics",
    "RandomConvFeatures",
    "make_extractor",
    "extractor_identity",
    "load_generator",
    "train_teacher",
]
