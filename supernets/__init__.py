"""How a choice becomes a network: ops, builders and ``build(space, arch, **task)``."""

from supernets import ops
from supernets.build import build

__all__ = ["build", "ops"]
