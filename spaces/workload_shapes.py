"""Shape helpers shared by the spaces' torch-free ``workloads_fn`` (no torch: spaces is numpy-only)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache


def out_size(size: int, kernel: int, stride: int) -> int:
    """Output side of a conv with padding ``kernel // 2`` (the builders' convention)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def check_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """``(batch, channels, height, width)`` of positive ints, or a one-line ``ValueError``."""
    if type(input_shape) is tuple:  # the batch path asks once per architecture for the same shape
        try:
            return _checked(input_shape)
        except TypeError:  # unhashable members: the checks below say what is wrong
            pass
    return _check(input_shape)


@lru_cache(maxsize=64)
def _checked(input_shape: tuple) -> tuple[int, int, int, int]:
    return _check(input_shape)


def _check(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape: expected (batch, channels, height, width) of positive ints, found {input_shape!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape: expected (batch, channels, height, width) of positive ints, found {tuple(input_shape)!r}")
    return shape  # type: ignore[return-value]
