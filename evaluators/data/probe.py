"""What a search's pre-flight check needs from a data set, without torch or Lightning.

Why: checking a config used to build the data module, which imports Lightning (5-10 s on this
2-core machine) in the driver, a process that never trains when trials run on Ray workers. A
built-in data set can register a *probe* (``registry.PROBES``): a torch-free function taking the
data module's own options that checks them the way the module does, reads the data set as the
module would (the same helpers) and answers with a ``DataProbe``. A contract test
(``tests/evaluators/test_data_probes.py``) holds every probe equal to its data module: same
options, same answers, same errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataProbe:
    """A data set as a search sees it before training: shapes, the builder's keywords, the split."""

    input_shape: tuple[int, ...]
    num_classes: int
    builder_kwargs: dict[str, Any]  # what ``supernets.build`` takes from the data (``BaseDataModule.builder_kwargs``)
    split: dict[str, Any]  # ``evaluators.data.splits.split_identity`` of the set-up module


def check_loader_args(batch_size: int, num_workers: int) -> None:
    """The loader options every data module takes (``BaseDataModule`` and the probes check them here)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
