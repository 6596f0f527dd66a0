"""The result types: ``CostReport`` (one architecture) and its per-layer ``LayerRow``s."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerRow:
    """One costed layer. ``bound`` is "compute" or "memory" (which side of the roofline set its time)."""

    name: str
    op: str
    w_bits: float
    a_bits: float
    ops: float
    cycles: float
    bound: str
    energy_mj: float
    share: float
    latency_ms: float
    lanes: float = 0.0
    ddr_bytes: float = 0.0


@dataclass
class CostReport:
    """Estimated FPGA cost of one architecture on one device (units in the field names)."""

    energy_mj: float
    latency_ms: float
    throughput_fps: float
    power_w: float
    lut: float
    ff: float
    dsp: float
    bram: float
    feasible: bool
    rows: list[LayerRow] = field(default_factory=list)
    uncosted: list[str] = field(default_factory=list)
    device: str = ""
    style: str = "overlay"
    mult_impl: str = "auto"
    pe_array: tuple[int, int] = (0, 0)
    folded: bool = False
    lanes: float = 0.0
    onchip_dynamic_power_w: float = 0.0
    energy_compute_mj: float = 0.0
    energy_bram_mj: float = 0.0
    energy_ddr_mj: float = 0.0
    energy_static_mj: float = 0.0
    ops: float = 0.0
    ddr_bytes: float = 0.0
    utilisation: dict[str, float] = field(default_factory=dict)
    # why no design fits the device ("" when feasible); an infeasible report's energy, latency,
    # throughput and power are NaN: a design that cannot be built has none
    infeasible_reason: str = ""

    _SCALARS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram",
                "onchip_dynamic_power_w", "energy_compute_mj", "energy_bram_mj", "energy_ddr_mj",
                "energy_static_mj", "ops", "ddr_bytes", "lanes")

    def to_dict(self) -> dict[str, float]:
        """Flat scalar metrics for logging (feasible as 0/1, utilisation as ``*_util``)."""
        d: dict[str, float] = {k: float(getattr(self, k)) for k in self._SCALARS}
        d["feasible"] = 1.0 if self.feasible else 0.0
        d["folded"] = 1.0 if self.folded else 0.0
        d["pe_in"], d["pe_out"] = float(self.pe_array[0]), float(self.pe_array[1])
        d["n_uncosted"] = float(len(self.uncosted))
        for k, v in self.utilisation.items():
            d[f"{k}_util"] = float(v)
        return d

    def to_json(self, **kw: Any) -> str:
        """Everything, rows and uncosted modules included, as JSON."""
        d = asdict(self)
        d["pe_array"] = list(self.pe_array)
        return json.dumps(d, **kw)

    def __str__(self) -> str:  # short one-liner; render.format_report gives the table
        return (f"CostReport({self.device}, {self.style}: {self.energy_mj:.4g} mJ, {self.latency_ms:.4g} ms, "
                f"{self.power_w:.3g} W, LUT {self.lut:.0f}, DSP {self.dsp:.0f}, BRAM {self.bram:.0f}, "
                f"feasible={self.feasible}, {len(self.uncosted)} uncosted)")
