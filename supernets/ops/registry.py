"""Registry of ops: ``@register_op("adder")`` on an ``nn.Module`` class; plug-ins via ``abacus.ops``."""

from __future__ import annotations

from typing import Callable, TypeVar

from spaces.registry import Registry

T = TypeVar("T")

OPS: Registry = Registry("op", entry_point_group="abacus.ops", list_hint="see supernets.ops.list_ops()")


def register_op(name: str, *, overwrite: bool = False) -> Callable[[T], T]:
    """Class decorator: make an op constructible by name (``get_op(name)(in_ch, out_ch, k, ...)``)."""
    return OPS.decorator(name, overwrite=overwrite)


def get_op(name: str):
    return OPS.get(name)


def list_ops(pattern: str = "*") -> list[str]:
    return OPS.names(pattern)
