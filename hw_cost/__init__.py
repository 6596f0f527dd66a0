"""Analytical FPGA cost model: energy, latency, resources and feasibility of a network on a board.

numpy core; torch is imported only by ``hw_cost.trace`` (lazily, when a module is traced).
Public API: ``estimate``, ``estimate_batch``, ``trace_workloads`` (an ``nn.Module`` -> workload
dicts; imports torch on first use), ``CostReport``, ``list_devices``, ``get_device``, ``register_device``; ``hw_cost.render.format_report`` and ``hw_cost.constraints.parse_constraint``
for the CLI and the search. Formulas and sources: docs/cost-model.md.
"""

from .api import estimate, estimate_batch, estimate_reports
from .devices import DeviceProfile, get_device, list_devices, load_device_yaml, register_device
from .energy import HOROWITZ, HorowitzAnchors, e_add, e_adder_kernel, e_mac, e_mul, e_xnor_popcount
from .params import DEFAULT_PARAMS, CostParams
from .report import CostReport, LayerRow
from .workload import OP_NAMES, WORKLOAD_DTYPE, WorkloadBatch, blocks_to_array, workloads_to_array

__all__ = [
    "estimate", "estimate_batch", "estimate_reports", "CostReport", "LayerRow", "DeviceProfile", "get_device", "list_devices",
    "load_device_yaml", "register_device", "CostParams", "DEFAULT_PARAMS", "HorowitzAnchors", "HOROWITZ",
    "e_add", "e_mul", "e_mac", "e_adder_kernel", "e_xnor_popcount", "OP_NAMES", "WORKLOAD_DTYPE",
    "workloads_to_array", "blocks_to_array", "WorkloadBatch", "trace_workloads",
]


def __getattr__(name: str):
    # ``hw_cost.trace_workloads`` without importing torch for users who never trace
    if name == "trace_workloads":
        from .trace import trace_workloads

        return trace_workloads
    raise AttributeError(f"module 'hw_cost' has no attribute {name!r}")
