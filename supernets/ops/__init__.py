"""Efficient ops, each registered by name (``get_op("adder")``, ``list_ops()``).

Importing this package registers the built-in ops; plug-ins add theirs through the entry-point
group ``abacus.ops``. Every op describes its arithmetic to the cost model with ``hw_workload``
(standard torch layers such as ``nn.Conv2d`` are costed by hw_cost directly).
"""

from torch import nn

from supernets.ops.registry import OPS, get_op, list_ops, register_op

from supernets.ops.adder import AdderConv2d, adder_conv2d, apply_alr, native_kernel_available, set_adder_p  # noqa: E402
from supernets.ops.binary import BinaryConv2d  # noqa: E402
from supernets.ops.quant import QuantAdderConv2d, QuantConv2d  # noqa: E402
from supernets.ops.winograd_adder import WinogradAdderConv2d  # noqa: E402

register_op("conv")(nn.Conv2d)

__all__ = [
    "AdderConv2d", "BinaryConv2d", "OPS", "QuantAdderConv2d", "QuantConv2d", "WinogradAdderConv2d",
    "adder_conv2d", "apply_alr", "get_op", "list_ops", "native_kernel_available", "register_op", "set_adder_p",
]
