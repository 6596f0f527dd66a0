"""How a choice becomes a network: ops, builders and ``build(space, arch, **task)``."""

from supernets import ops
from supernets.build import build
from supernets.export import load_exported, save_exported

__all__ = ["build", "load_exported", "ops", "save_exported"]
