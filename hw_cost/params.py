"""The per-op parameter table of the cost model: every tunable constant in one overridable place.

Why a dataclass: users (and the calibration tests) override single constants with
``DEFAULT_PARAMS.replace(lut_scale=0.9)`` or ``estimate(..., params={"lut_scale": 0.9})`` without
forking the formulas. Each field's comment names its source; "(from memory)" marks a figure not
checked against a published source, "(assumption)" a modelling choice, "(derived)" a computation
from cited numbers, "(calibrated)" a fit to a named measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .energy import HOROWITZ, HorowitzAnchors

# Special-function / vector-unit classes (order matters: it is the code used in the numpy tables).
SFU_CLASSES: tuple[str, ...] = ("eltwise", "pool", "norm", "softmax", "gelu", "upsample", "pixel_shuffle", "gather")


def _sfu_default() -> dict[str, dict[str, float]]:
    # Per element: adds / mults of the arithmetic; per vector lane: LUT per activation bit and
    # multiplier units (DSP-mapped). All (assumption) unless noted; see docs/cost-model.md.
    return {
        # one add / compare per element (ReLU, residual add, clamp)
        "eltwise": {"adds": 1, "mults": 0, "lut_per_bit": 1.0, "mult_units": 0},
        # max: one compare per window element; avg: one add (FINN charges pooling no MACs; DNN-Chip
        # Predictor uses 0 pJ for pooling: we keep one add per element, verified for the latter)
        "pool": {"adds": 1, "mults": 0, "lut_per_bit": 1.0, "mult_units": 0},
        # affine norm: scale (mult) + shift (add); LayerNorm's mean/var add two adds and a mult per
        # element (rsqrt amortised over the row) -> 2 adds, 2 mults (derived)
        "norm": {"adds": 2, "mults": 2, "lut_per_bit": 3.0, "mult_units": 1},
        # exp by a piecewise-linear table (1 mult + 1 add), running sum (1 add), reciprocal
        # multiply (1 mult) + max subtraction (1 add) -> 3 adds, 2 mults (assumption)
        "softmax": {"adds": 3, "mults": 2, "lut_per_bit": 10.0, "mult_units": 2},
        # GELU / SiLU / sigmoid / tanh as a short polynomial or table: 3 adds, 3 mults (assumption)
        "gelu": {"adds": 3, "mults": 3, "lut_per_bit": 6.0, "mult_units": 2},
        # data movement only (issue: "upsampling and pixel shuffle (data movement only)"):
        # address generation and a mux per lane
        "upsample": {"adds": 0, "mults": 0, "lut_per_bit": 0.5, "mult_units": 0},
        "pixel_shuffle": {"adds": 0, "mults": 0, "lut_per_bit": 0.5, "mult_units": 0},
        # gather/scatter of a sparse conv's active pixels (FADN): an address from the compacted
        # index list and a mux per lane, like the other data movers (assumption)
        "gather": {"adds": 0, "mults": 0, "lut_per_bit": 0.5, "mult_units": 0},
    }


@dataclass(frozen=True)
class CostParams:
    """Every constant of the model that is not a device property."""

    horowitz: HorowitzAnchors = HOROWITZ

    # ---- LUT model of a PE lane (docs/cost-model.md "Resources") ----
    # LUT-mapped a x w multiplier: (2*ceil((a+w)/6) - 1) * (a+w), FINN's lut_estimation
    # (verified: Xilinx/finn matrixvectoractivation_hls.py; 8x8 -> 80 LUT).
    # AdderNet kernel: two (n+1)-bit subtractors + an (n+1)-bit sign select (derived from the
    # mqhuangGit/AdderNet-FPGA RTL: two 9-bit subtractions and a select at 8-bit data):
    adder_sub_luts_per_bit: float = 2.0     # two subtractors, one LUT6 + carry bit each per bit (from memory: n-bit adder ~ n LUT)
    adder_select_luts_per_bit: float = 0.5  # 2:1 select, two bits per LUT6 (dual LUT5 with shared select) (from memory)
    xnor_lane_lut: float = 2.0              # FINN formula at W = A = 1: (2*ceil(2/6)-1)*2 = 2 (derived)
    dsp_lane_glue_lut: float = 0.0          # a DSP-mapped multiplier needs no fabric for the product (assumption)
    acc_extra_bits: int = 8                 # accumulator headroom beyond the tree output for k*k*ceil(Cin/Q) terms (assumption)
    # Scale on the structural LUT count, fitted once so the 8-bit 16x16 LUT-multiplier conv array
    # equals the AdderNet-FPGA measurement of 20,493 LUT (calibrated: mqhuangGit/AdderNet-FPGA
    # README, ZCU104). The adder array (7,065 LUT measured) is then a prediction, not a fit.
    lut_scale: float = 0.7878
    array_ctrl_lut: float = 300.0           # fixed control per array / engine: FINN's "300 +" constant (verified, finn lut_estimation)
    array_ctrl_ff: float = 300.0            # control registers per array (assumption: mirrors the LUT constant)
    sfu_ctrl_lut: float = 100.0             # control of one vector (special-function) unit (assumption)
    float_mac_lut_dsp: float = 400.0        # fp32 MAC with a DSP-mapped multiplier: ~400 LUT for the fp adder (from memory: Xilinx Floating-Point IP)
    float_mac_dsp: float = 3.0              # fp32 multiplier: 3 DSP48E2 (from memory: Xilinx Floating-Point IP, full DSP usage)
    float_mac_lut_lut: float = 1100.0       # fp32 MAC all in LUTs (from memory: ~700 LUT mult + ~400 LUT add)
    float_adder_lut: float = 800.0          # fp32 |x-w| + accumulate: two fp adders (from memory)

    # ---- DSP mapping ----
    # "auto" maps multipliers to LUTs when a + w <= this (4x4 bits: 24 LUT by FINN's formula,
    # cheaper than a DSP; spec §1.3 note "below about 4x4 bit") (derived).
    lut_mult_max_sum_bits: int = 8
    # MACs per DSP slice: DSP48E2 packs two INT8 MACs sharing one operand (verified: Xilinx WP486/
    # WP487), ~four INT4 (from memory: Xilinx WP521); DSP48E1 has no INT8 packing in WP486's form
    # (assumption). Keys: max(a, w) upper bound -> MACs per DSP.
    dsp_pack_e2: tuple[tuple[int, int], ...] = ((4, 4), (8, 2))
    dsp_pack_e1: tuple[tuple[int, int], ...] = ()

    # ---- array shapes ----
    # A MAC kind (multiplication / adder / binary) whose share of the network's MAC-class ops is
    # below this gets a one-column array (P_in x 1) instead of a full copy (assumption; keeps the
    # first conv / classifier of an AdderNet from doubling the design).
    minor_share: float = 0.25
    overlay_candidates: tuple[tuple[int, int], ...] = (
        (1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 4), (8, 8), (16, 8), (16, 16),
        (32, 16), (32, 32), (64, 32), (64, 64), (128, 64), (128, 128),
    )
    dataflow_max_log2_lanes: int = 18       # dataflow search over total lanes 2^0 .. 2^18 (assumption)
    dataflow_simd: int = 16                 # adder-tree fan-in of a dataflow engine (FINN SIMD, assumption)

    # ---- memory ----
    act_buffer_share: float = 0.5           # on-chip memory split activations / weights in the overlay (assumption)
    bram_bytes: int = 4608                  # one BRAM36 = 36 Kb (verified: Xilinx UG573)
    uram_bytes: int = 36864                 # one URAM = 288 Kb (verified: Xilinx UG573)
    bram_port_bits: int = 72                # widest BRAM36 port (512 x 72 mode) (verified: UG573)

    # ---- special-function units ----
    sfu: Mapping[str, Mapping[str, float]] = field(default_factory=_sfu_default)

    # ---- Winograd F(2x2, 3x3) transforms (Lavin & Gray 2016; used by Winograd AdderNet, Li et al. ICML'21) ----
    wino_input_adds_per_tile: float = 32.0  # B^T d B on a 4x4 tile: 8 one-dimensional 4-point transforms x 4 adds (derived)
    wino_output_adds_per_tile: float = 24.0  # A^T m A, 4x4 -> 2x2: 4 x 4 + 2 x 4 adds (derived)
    wino_transform_lut_per_bit: float = 2.0  # transform adders per array lane, per activation bit (assumption)

    def replace(self, **changes: Any) -> "CostParams":
        """A copy with some fields changed (unknown names raise a one-line ValueError)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(changes) - names)
        if bad:
            raise ValueError(f"unknown cost parameter(s) {bad}; expected some of {sorted(names)}")
        if "horowitz" in changes and isinstance(changes["horowitz"], Mapping):
            changes["horowitz"] = dataclasses.replace(self.horowitz, **changes["horowitz"])
        if "sfu" in changes:
            merged = {k: dict(v) for k, v in self.sfu.items()}
            for k, v in changes["sfu"].items():
                merged.setdefault(k, {}).update(v)
            changes["sfu"] = merged
        return dataclasses.replace(self, **changes)

    def dsp_pack(self, max_bits, dsp_type: str):
        """MACs per DSP slice for operands up to ``max_bits`` (numpy-friendly)."""
        import numpy as np

        table = self.dsp_pack_e2 if str(dsp_type).upper().endswith("E2") else self.dsp_pack_e1
        mb = np.asarray(max_bits, dtype=np.float64)
        out = np.ones_like(mb)
        for limit, pack in sorted(table, reverse=True):  # widest first, narrower overwrite
            out = np.where(mb <= limit, float(pack), out)
        return out


DEFAULT_PARAMS = CostParams()


def resolve_params(params: CostParams | Mapping[str, Any] | None) -> CostParams:
    """Accept None (defaults), a CostParams, or a dict of overrides."""
    if params is None:
        return DEFAULT_PARAMS
    if isinstance(params, CostParams):
        return params
    if isinstance(params, Mapping):
        return DEFAULT_PARAMS.replace(**params)
    raise TypeError(f"params must be None, a CostParams or a dict of overrides, got {type(params).__name__}")
