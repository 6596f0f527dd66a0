"""How a choice becomes a network: ops, builders, ``build(space, arch, **task)`` and the
weight-sharing supernets (``build_supernet(space, ...)`` with ``set_active`` / ``extract``)."""

from supernets import ops
from supernets.build import build
from supernets.export import load_exported, save_exported
from supernets.sampling import ChoiceLayer, list_path_samplers, make_path_sampler
from supernets.supernet import Supernet, build_supernet, has_supernet, list_supernets, recalibrate, register_supernet

from supernets import resnet_supernet as _resnet_supernet  # noqa: F401,E402  (registers built-in supernets)
from supernets import gan_supernet as _gan_supernet  # noqa: F401,E402

__all__ = [
    "ChoiceLayer", "Supernet", "build", "build_supernet", "has_supernet", "list_path_samplers", "list_supernets",
    "load_exported", "make_path_sampler", "ops", "recalibrate", "register_supernet", "save_exported",
]
