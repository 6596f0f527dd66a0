"""The front door: ``build(space_name, arch, **task) -> nn.Module``.

The space names its builder as ``"module:function"``; the builder receives the validated
architecture and the task's keyword arguments it accepts (``input_shape``, ``num_classes``,
``scale``, ...; all of them when it takes ``**kwargs``).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from spaces import SearchSpace, get_space
from spaces.space import _resolved


def build(space: str | SearchSpace, arch: Mapping[str, Any], **task: Any) -> nn.Module:
    """``space`` is a registered name or a ``SearchSpace`` (the search ships the object to its
    workers, so spaces registered only in the driver's process work on Ray too)."""
    space = space if isinstance(space, SearchSpace) else get_space(space)
    space_name = space.name
    arch = space.validate(arch)
    if space.builder is None:
        raise ValueError(f"space {space_name!r} has no builder; set SearchSpace(builder='package.module:function')")
    fn, names = _resolved(space.builder)
    # only the task keywords the builder takes (a classifier's builder never sees an SR task's
    # ``scale``); the space's own options always go through
    if names is not None:
        task = {k: v for k, v in task.items() if k in names}
    model = fn(arch, **({**space.options, **task} if space.options else task))
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder of space {space_name!r} must return an nn.Module, returned {type(model).__name__}")
    return model
