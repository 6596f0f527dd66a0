"""The vectorised cost engine: one structured workload table (many architectures) -> costs.

Everything is numpy over rows (layers) and columns (candidate PE-array sizes), so one call costs
one architecture for ``estimate`` or thousands for ``estimate_batch`` with the same arithmetic.
Formulas are documented, with sources, in docs/cost-model.md; the constants live in
``params.CostParams`` and ``devices.DeviceProfile``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .devices import DeviceProfile
from .energy import e_add, e_adder_kernel, e_mac, e_mul, e_xnor_popcount
from .params import SFU_CLASSES, CostParams
from .workload import ADD, MAC_KINDS, MOVE, MUL, NONE, OP_IS_DW, OP_IS_POOL, OP_IS_WINO, OP_KIND, OP_SFU, VEC, XNOR

STYLES = ("overlay", "dataflow")
MULT_IMPLS = ("auto", "dsp", "lut")
_NS = len(SFU_CLASSES)
# kind -> flag tables (a gather is far cheaper than np.isin on every row)
_IS_MAC = np.isin(np.arange(6), MAC_KINDS)
_IS_VECMOVE = np.isin(np.arange(6), (VEC, MOVE))
_IS_FUSABLE = np.isin(np.arange(6), (VEC, MOVE, NONE))


def _ceil(x):
    # guard against float noise: ceil(4.0000000001) must stay 4; + 0.0 turns -0.0 into 0.0
    y = np.asarray(x) - 1e-9
    if y.ndim == 0:
        return np.ceil(y) + 0.0
    np.ceil(y, out=y)
    y += 0.0
    return y


def _tree_share(q, pw):
    """LUTs per lane of a Q-input adder tree with pw-bit leaves: sum_l 2^-l (pw + l), l = 1..log2 Q.

    Closed form pw (1 - 2^-L) + 2 - (L + 2) 2^-L with L = log2 Q (derived; FINN charges a similar
    (W+A)(2Q-1) per PE, Xilinx/finn lut_estimation).
    """
    L = np.log2(np.maximum(q, 1.0))
    t = 2.0 ** (-L)
    return pw * (1.0 - t) + 2.0 - (L + 2.0) * t


def _lut_mult(a, w):
    """FINN's LUT-multiplier estimate (2*ceil((a+w)/6) - 1) * (a+w) (verified: Xilinx/finn)."""
    s = a + w
    return (2.0 * np.ceil(s / 6.0) - 1.0) * s


def _dsp_per_mult(a, w, is_float, dsp_type: str, p: CostParams):
    """DSP slices for one multiplier: ceil(max/27)*ceil(min/18) on DSP48E2, 25 on E1 (from memory,
    hls4ml issue #31); fp32: ``float_mac_dsp``, fp16: 1 (from memory)."""
    wide = 27.0 if str(dsp_type).upper().endswith("E2") else 25.0
    hi, lo = np.maximum(a, w), np.minimum(a, w)
    di = np.ceil(hi / wide) * np.ceil(lo / 18.0)
    df = np.where(hi >= 32, p.float_mac_dsp, 1.0)
    return np.where(is_float, df, di)


def _segments(arch: np.ndarray, n_arch: int):
    counts = np.bincount(arch, minlength=n_arch)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return counts, starts


def _seg_sum(x: np.ndarray, counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-architecture sums of a (M,) or (M, C) array over contiguous row segments."""
    out = np.zeros((len(counts),) + x.shape[1:])
    nz = counts > 0
    if x.shape[0] and nz.any():
        out[nz] = np.add.reduceat(x, starts[nz], axis=0)
    return out


def _seg_max(x: np.ndarray, counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    out = np.zeros((len(counts),) + x.shape[1:])
    nz = counts > 0
    if x.shape[0] and nz.any():
        out[nz] = np.maximum.reduceat(x, starts[nz], axis=0)
    return out


def _fold_sequence(pe: tuple[int, int]) -> list[tuple[int, int]]:
    """The user's array, then halving the larger side until 1x1 (overlay folding)."""
    pin, pout = int(pe[0]), int(pe[1])
    seq = [(pin, pout)]
    while pin > 1 or pout > 1:
        if pout >= pin and pout > 1:
            pout = (pout + 1) // 2
        else:
            pin = (pin + 1) // 2
        seq.append((pin, pout))
    return seq


def run_engine(arr: np.ndarray | None, n_arch: int, dev: DeviceProfile, p: CostParams, style: str = "overlay",
               pe_array: tuple[int, int] | int | None = None, mult_impl: str = "auto",
               arch_offset: int = 0, rows_of: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               want_rows: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cost every architecture in ``arr``; returns (per-architecture arrays, per-layer arrays).

    ``rows_of = (table, idx, arch)`` replaces ``arr`` (None then) by ``table[idx]`` with architecture
    column ``arch``: the per-row terms that do not depend on the architecture are computed once per
    distinct row of ``table`` and gathered, the same arithmetic row by row (bit-identical) at a
    fraction of the work when architectures share rows. ``want_rows=False`` skips the per-layer outputs (the batch path)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if mult_impl not in MULT_IMPLS:
        raise ValueError(f"mult_impl must be one of {MULT_IMPLS}, got {mult_impl!r}")
    if pe_array is None:
        pe_array = dev.pe_array  # a board profile that describes one fixed design
    L = _layer_terms(arr, n_arch, dev, p, arch_offset, rows_of)
    if style == "overlay":
        return _overlay(L, n_arch, dev, p, pe_array, mult_impl, want_rows)
    return _dataflow(L, n_arch, dev, p, pe_array, mult_impl, want_rows)


# --------------------------------------------------------------------------------------------
# per-layer terms shared by both styles
# --------------------------------------------------------------------------------------------

def _layer_terms(arr: np.ndarray | None, n_arch: int, dev: DeviceProfile, p: CostParams, arch_offset: int = 0,
                 rows_of: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    if rows_of is None:
        assert arr is not None
        arch = arr["arch"].astype(np.int64)
        L = _row_terms(arr, dev, p)
    else:
        table, idx, arch = rows_of
        arch = arch.astype(np.int64)
        # distinct rows first when that is less work (a small batch against a large row cache)
        if table.size < idx.size:
            memo = _TERMS_MEMO[0]  # the chunks of one batch share the distinct rows' terms
            if memo is None or memo[0] is not table or memo[1] is not dev or memo[2] is not p:
                memo = _TERMS_MEMO[0] = (table, dev, p, _row_terms(table, dev, p))
            L = _Gathered(memo[3], idx)
        else:
            L = _row_terms(table[idx], dev, p)
    if arch_offset:
        arch -= arch_offset
    counts, starts = _segments(arch, n_arch)
    L.update(arch=arch, counts=counts, starts=starts)
    return L


_TERMS_MEMO: list[Any] = [None]


class _Gathered(dict):
    """Per-row terms of distinct rows, gathered to the batch's rows on first use (a style reads
    only some of them)."""

    def __init__(self, terms: dict[str, np.ndarray], idx: np.ndarray) -> None:
        super().__init__()
        self._terms, self._idx = terms, idx

    def __missing__(self, key: str) -> np.ndarray:
        v = self[key] = self._terms[key][self._idx]
        return v


_BOOLS = np.array([0.0, 1.0])


def _at(L: dict[str, Any], key: str, rows: Any) -> np.ndarray:
    """``L[key][rows]``; on gathered terms not gathered yet, taken from the distinct rows directly
    (the same values without gathering the whole column)."""
    if isinstance(L, _Gathered) and key not in L:
        return L._terms[key][L._idx[rows]]
    return L[key][rows]


def _group_max(key: np.ndarray, vals: np.ndarray, size: int, values: np.ndarray | None = None) -> np.ndarray:
    """``out[k] = max(0, vals[key == k])``: one bincount per distinct value when there are few
    (bit widths: a handful), ``np.maximum.at`` otherwise; the max is exact either way. ``values``:
    a superset of the values in ``vals`` (the distinct rows' column), cheaper to sort."""
    out = np.zeros(size)
    u = (np.unique(vals) if values is None else np.unique(values)) if vals.size else vals
    if u.size > 16:
        np.maximum.at(out, key, vals)
        return out
    for v in u[u > 0]:  # ascending: a larger value overwrites
        out[np.bincount(key[vals == v], minlength=size) > 0] = v
    return out


def _row_terms(arr: np.ndarray, dev: DeviceProfile, p: CostParams) -> dict[str, Any]:
    """The per-layer terms that depend on the row alone (not on its architecture)."""
    op = arr["op"].astype(np.int64)
    kind = OP_KIND[op].astype(np.int64)
    sfu = OP_SFU[op].astype(np.int64)
    wb = arr["w_bits"].astype(np.float64)
    ab = arr["a_bits"].astype(np.float64)
    flt = arr["is_float"].astype(bool)
    ratio = arr["active_ratio"].astype(np.float64)
    fused = arr["fused"].astype(bool) & _IS_FUSABLE[kind]
    cin, cout = arr["in_channels"].astype(np.float64), arr["out_channels"].astype(np.float64)
    K = np.maximum(arr["kernel"].astype(np.float64), 1.0)
    pix = arr["out_pixels"].astype(np.float64)
    wino = OP_IS_WINO[op]
    dw = OP_IS_DW[op]
    has_ch = (cin > 0) & (cout > 0) & (pix > 0)
    tiles = np.where(arr["tiles"] > 0, arr["tiles"], np.ceil(pix / 4.0))
    map_K = np.where(wino, 16.0, K)        # Winograd F(2x2,3x3): 16 element-wise ops per tile
    map_pix = np.where(wino, tiles, pix)
    tr = np.where(arr["transform_ops"] >= 0, arr["transform_ops"],
                  np.where(wino & has_ch, tiles * (p.wino_input_adds_per_tile * cin + p.wino_output_adds_per_tile * cout), 0.0))
    ops = arr["ops"].astype(np.float64)
    in_e, out_e = arr["in_elems"].astype(np.float64), arr["out_elems"].astype(np.float64)
    move_elems = np.where(out_e > 0, out_e, in_e)
    # pooling is a window reduction: the window's K elements go through one adder / comparator tree
    # (the array's input lanes, like a depthwise conv), so its cycles count outputs, not window elements
    is_pool = OP_IS_POOL[op]
    pool_win = np.where(arr["kernel"] > 0, arr["kernel"], np.divide(ops, np.maximum(out_e, 1.0)))
    vec_work = np.where(kind == VEC, np.where(is_pool & (out_e > 0), out_e, ops), np.where(kind == MOVE, move_elems, 0.0))
    # a fused op with an operand of its own (the residual add's shortcut) still reads that operand
    # through the output stage: elements beyond its output (in_elems - out_elems) pass the vector lanes
    side = np.where(fused & (kind == VEC), np.maximum(in_e - out_e, 0.0), 0.0)

    # energy per primitive op (pJ, 45 nm) by op class
    hz = p.horowitz
    e_op = np.zeros(len(arr))
    e_op = np.where(kind == MUL, e_mac(ab, wb, flt, hz), e_op)
    e_op = np.where(kind == ADD, e_adder_kernel(ab, wb, flt, hz), e_op)
    e_op = np.where(kind == XNOR, e_xnor_popcount(hz), e_op)
    sadds = np.array([p.sfu[c]["adds"] for c in SFU_CLASSES], dtype=np.float64)
    smults = np.array([p.sfu[c]["mults"] for c in SFU_CLASSES], dtype=np.float64)
    sidx = np.clip(sfu, 0, _NS - 1)
    e_vec = sadds[sidx] * e_add(ab, flt, hz) + smults[sidx] * e_mul(ab, ab, flt, hz)
    e_op = np.where(kind == VEC, e_vec, e_op)
    e_tr = e_add(np.where(flt, ab, ab + 2.0), flt, hz)  # transform adds grow the operand by 2 bits (F(2,3) sums of 4)
    compute_pj = dev.energy_scale * ratio * (ops * e_op + tr * e_tr)
    compute_pj = np.where(kind == MOVE, 0.0, compute_pj)

    w_bytes = arr["params"] * wb / 8.0 * ratio
    in_b, out_b = in_e * ab / 8.0, out_e * ab / 8.0
    idle = fused | (kind == NONE)
    # overlay: activations that overflow the activation buffer stream from DDR, re-read once per
    # weight tile (row-local, so computed once per distinct row on the batch path)
    onchip = dev.util_cap * (dev.bram36 * p.bram_bytes + dev.uram * p.uram_bytes)
    w_budget, a_budget = (1.0 - p.act_buffer_share) * onchip, p.act_buffer_share * onchip
    io = in_b + out_b
    fits = io <= a_budget
    reread = np.maximum(1.0, _ceil(w_bytes / max(w_budget, 1.0)))
    return dict(ov_fits=fits, ov_act_ddr=np.where(fits, 0.0, in_b * reread + out_b), ov_busy_io=np.where(idle, 0.0, io),
                kind=kind, sfu=sfu, wb=wb, ab=ab, flt=flt, ratio=ratio, fused=fused, idle=idle,
                cin=cin, cout=cout, K=K, pix=pix, wino=wino, dw=dw, has_ch=has_ch, map_K=map_K, map_pix=map_pix,
                ops=ops, ops_eff=ops * ratio, tr=tr, vec_work=vec_work, compute_pj=compute_pj, is_pool=is_pool,
                pool_win=pool_win, side=side, side_b=side * ab / 8.0,
                w_bytes=w_bytes, in_b=in_b, out_b=out_b)


def _kind_stats(L: dict[str, Any], n_arch: int):
    """Per architecture and MAC kind: ops, presence, widest bits, float flag; per SFU class: presence, bits."""
    arch, kind = L["arch"], L["kind"]
    mac = _IS_MAC[kind]
    key = arch[mac] * 3 + kind[mac]
    kops = np.bincount(key, weights=L["ops_eff"][mac], minlength=3 * n_arch).astype(np.float64).reshape(n_arch, 3)
    kcnt = np.bincount(key, minlength=3 * n_arch).reshape(n_arch, 3)
    T = L._terms if isinstance(L, _Gathered) else {}
    ka = _group_max(key, _at(L, "ab", mac), 3 * n_arch, T.get("ab"))
    kw = _group_max(key, _at(L, "wb", mac), 3 * n_arch, T.get("wb"))
    kf = _group_max(key, _at(L, "flt", mac).astype(np.float64), 3 * n_arch, _BOOLS if T else None)
    vm = _IS_VECMOVE[kind] & ~L["fused"]   # fused ops run in the array's output stage: no unit of their own
    skey = arch[vm] * _NS + _at(L, "sfu", vm)
    scnt = np.bincount(skey, minlength=_NS * n_arch).reshape(n_arch, _NS)
    sa = _group_max(skey, _at(L, "ab", vm), _NS * n_arch, T.get("ab"))
    sf = _group_max(skey, _at(L, "flt", vm).astype(np.float64), _NS * n_arch, _BOOLS if T else None)
    wino_any = np.bincount(arch[_at(L, "wino", slice(None))], minlength=n_arch) > 0
    return (kops, kcnt > 0, ka.reshape(n_arch, 3), kw.reshape(n_arch, 3), kf.reshape(n_arch, 3) > 0,
            scnt > 0, sa.reshape(n_arch, _NS), sf.reshape(n_arch, _NS) > 0, wino_any)


def _lane_costs(kidx, a, w, f, q, lanes, dsp_lanes, p: CostParams):
    """LUT (before scale), FF of ``lanes`` MAC lanes of kind ``kidx`` with tree fan-in q (broadcasting)."""
    n = np.maximum(a, w)
    pw = np.where(kidx == MUL, np.where(f, n, a + w), np.where(kidx == ADD, np.where(f, n, n + 1.0), 1.0))
    mult_lut = np.where(f, p.float_mac_lut_lut, _lut_mult(a, w))
    dsp_lut = np.where(f, p.float_mac_lut_dsp, p.dsp_lane_glue_lut)
    k_mul = (lanes - dsp_lanes) * mult_lut + dsp_lanes * dsp_lut
    k_add = lanes * np.where(f, p.float_adder_lut, (p.adder_sub_luts_per_bit + p.adder_select_luts_per_bit) * (n + 1.0))
    k_x = lanes * p.xnor_lane_lut
    kern = np.where(kidx == MUL, k_mul, np.where(kidx == ADD, k_add, k_x))
    tree = _tree_share(q, pw)
    cols = lanes / np.maximum(q, 1.0)
    acc = pw + np.log2(np.maximum(q, 1.0)) + p.acc_extra_bits
    lut = kern + lanes * tree + cols * 2.0 * acc
    ff = lanes * (np.where(kidx == XNOR, 2.0, a + w) + pw + tree) + cols * 2.0 * acc
    return lut, ff


def _mul_dsp_split(a, w, f, lanes, budget, mult_impl: str, dev: DeviceProfile, p: CostParams, minor=False):
    """(lanes on DSPs, DSP slices used) for a multiplication array of ``lanes`` lanes."""
    dpm = _dsp_per_mult(a, w, f, dev.dsp_type, p)
    pack = np.where(f, 1.0, p.dsp_pack(np.maximum(a, w), dev.dsp_type))
    per_lane = dpm / pack
    if mult_impl == "lut":
        dl = np.zeros_like(lanes * per_lane)
    elif mult_impl == "dsp":
        dl = lanes * np.ones_like(per_lane)
    else:
        small = (~f) & (a + w <= p.lut_mult_max_sum_bits) & ~np.asarray(minor, dtype=bool)
        with np.errstate(divide="ignore"):
            cap = np.floor(np.maximum(budget, 0.0) / per_lane + 1e-9)
        dl = np.where(small, 0.0, np.minimum(lanes, cap))
    return dl, _ceil(dl * per_lane)


# --------------------------------------------------------------------------------------------
# overlay: one layer-sequential PE array (per MAC kind), sized to fit, folded when it does not
# --------------------------------------------------------------------------------------------

_OV_CAND_KEYS = ("dw", "cin", "map_K", "vec_work", "is_pool", "pool_win", "side")


def _ov_cand_terms(R, pin, V, dev: DeviceProfile):
    """Overlay cycle terms fixed by the row and the array shape (P_in, vector lanes V): the
    reduction steps per output of a MAC layer, a vector layer's cycles, a fused op's side reads."""
    mK, cin = R["map_K"], R["cin"]
    red = np.where(R["dw"], _ceil(mK / np.maximum(pin, float(dev.dw_window_taps))),
                   np.where(cin >= pin, _ceil(cin / pin) * mK, _ceil(cin * mK / pin)))
    vec = _ceil(R["vec_work"] / V) * np.where(R["is_pool"], _ceil(R["pool_win"] / pin), 1.0)
    return red, vec, _ceil(R["side"] / V)


_OV_COMP_KEYS = ("cout", "has_ch", "map_pix", "ops", "kind", "ratio", "idle", "side_b", "w_bytes", "in_b", "out_b")


def _ov_comp(R, red, vec, idle_comp, pin, pout):
    """Overlay compute cycles and BRAM bytes of rows ``R`` on arrays of ``pin`` x ``pout`` lanes
    (broadcasting: per row, or per distinct row and candidate on the batch path)."""
    cout_blocks = _ceil(R["cout"] / pout)
    comp_mac = np.where(R["has_ch"], cout_blocks * red * R["map_pix"], _ceil(R["ops"] / (pin * pout)))
    ismac = _IS_MAC[R["kind"]]
    comp = np.where(ismac, comp_mac, vec) * R["ratio"]
    comp = np.where(R["idle"], idle_comp, comp)
    # on-chip (BRAM) traffic: weights once, inputs once per output-channel block, outputs once
    reuse = np.where(ismac & R["has_ch"], cout_blocks, 1.0)
    return comp, np.where(R["idle"], R["side_b"], R["w_bytes"] + R["in_b"] * reuse + R["out_b"])


def _overlay(L, A, dev: DeviceProfile, p: CostParams, pe_array, mult_impl, want_rows: bool = True):
    counts, starts, arch, kind = L["counts"], L["starts"], L["arch"], L["kind"]
    if pe_array is None:
        cands = list(p.overlay_candidates)
    else:
        pe = (int(pe_array), 1) if np.isscalar(pe_array) else tuple(int(v) for v in pe_array)
        if len(pe) != 2 or min(pe) < 1:
            raise ValueError(f"pe_array must be (P_in, P_out) with positive ints, got {pe_array!r}")
        cands = _fold_sequence(pe)
    cin_c = np.array([c[0] for c in cands], dtype=np.float64)
    cout_c = np.array([c[1] for c in cands], dtype=np.float64)
    C = len(cands)

    kops, kpres, ka, kw, kf, spres, sa, sf, wino_any = _kind_stats(L, A)
    tot = kops.sum(1, keepdims=True)
    main = np.argmax(kops, axis=1)
    share = np.divide(kops, tot, out=np.ones_like(kops), where=tot > 0)
    minor = kpres & (np.arange(3)[None, :] != main[:, None]) & (share < p.minor_share)
    pin = np.broadcast_to(cin_c[None, None, :], (A, 3, C))
    pout = np.where(minor[:, :, None], 1.0, cout_c[None, None, :])
    lanes = pin * pout
    V = cout_c[None, :] * np.ones((A, 1))                    # vector-unit lanes = output width of the array

    # special-function units
    lpb = np.array([p.sfu[c]["lut_per_bit"] for c in SFU_CLASSES])
    mu = np.array([p.sfu[c]["mult_units"] for c in SFU_CLASSES])
    s_dpm = _dsp_per_mult(sa, sa, sf, dev.dsp_type, p)        # (A, S)
    sfu_lut = ((spres * (lpb[None, :] * sa)).sum(1)[:, None] * V + (spres.sum(1) * p.sfu_ctrl_lut)[:, None])
    sfu_ff = (spres * (2.0 * sa)).sum(1)[:, None] * V
    sfu_dsp = (spres * mu[None, :] * s_dpm).sum(1)[:, None] * V

    # MAC arrays
    a3, w3, f3 = ka[:, :, None], kw[:, :, None], kf[:, :, None]
    kidx = np.arange(3)[None, :, None]
    budget = dev.dsp_cap * dev.dsp - sfu_dsp                  # (A, C)
    # A minor multiplication array (the 8-bit stem / classifier of a binary or adder network) goes to
    # DSPs when multipliers may use them: as many output columns as the DSP budget holds (<= P_out),
    # so the stem keeps pace with the main array without costing LUTs. Otherwise one column.
    if mult_impl != "lut":
        a0, w0, f0 = ka[:, 0:1], kw[:, 0:1], kf[:, 0:1]
        per_lane = _dsp_per_mult(a0, w0, f0, dev.dsp_type, p) / np.where(f0, 1.0, p.dsp_pack(np.maximum(a0, w0), dev.dsp_type))
        with np.errstate(divide="ignore", invalid="ignore"):
            cap_cols = np.nan_to_num(np.floor(np.maximum(budget, 0.0) / per_lane / cin_c[None, :] + 1e-9), posinf=1e18)
        cols = np.where(cap_cols >= 1, 2.0 ** np.floor(np.log2(np.maximum(cap_cols, 1.0))), 1.0)
        cols = np.minimum(cols, cout_c[None, :])
        # (in "auto" a minor array uses the otherwise idle DSPs even for narrow multipliers, so a
        # narrower stem is never slower than a wider one)
        pout = pout.copy()
        pout[:, 0] = np.where(minor[:, 0:1], cols, pout[:, 0])
        lanes = pin * pout
    dl, mdsp = _mul_dsp_split(a3[:, 0], w3[:, 0], f3[:, 0], lanes[:, 0], budget, mult_impl, dev, p, minor[:, 0:1])
    dsp_lanes = np.zeros_like(lanes)
    dsp_lanes[:, 0] = dl
    lut_k, ff_k = _lane_costs(kidx, a3, w3, f3, pin, lanes, dsp_lanes, p)
    lut_k = p.lut_scale * lut_k + p.array_ctrl_lut
    ff_k = ff_k + p.array_ctrl_ff
    wt = np.where(wino_any[:, None], p.wino_transform_lut_per_bit * ka[:, 1:2] * (cin_c[None, :] + cout_c[None, :]), 0.0)
    lut = (kpres[:, :, None] * lut_k).sum(1) + sfu_lut + wt
    ff = (kpres[:, :, None] * ff_k).sum(1) + sfu_ff
    dsp = np.where(kpres[:, 0:1], mdsp, 0.0) + sfu_dsp

    # on-chip buffers and DDR traffic
    onchip = dev.util_cap * (dev.bram36 * p.bram_bytes + dev.uram * p.uram_bytes)
    w_budget = (1.0 - p.act_buffer_share) * onchip
    a_budget = p.act_buffer_share * onchip
    total_w = _seg_sum(L["w_bytes"], counts, starts)
    resident = (total_w <= w_budget) & bool(dev.weights_resident)
    w_b, idle = L["w_bytes"], L["idle"]
    ddr = np.where(resident[arch], 0.0, w_b) + L["ov_act_ddr"]
    ddr = np.where(idle, 0.0, ddr)
    nz = counts > 0
    first, last = starts[nz], (starts + counts - 1)[nz]
    ddr[first] += np.where(_at(L, "ov_fits", first), _at(L, "in_b", first), 0.0)     # network input from DDR
    ddr[last] += np.where(_at(L, "ov_fits", last), _at(L, "out_b", last), 0.0)       # network output to DDR
    w_need = np.where(resident, total_w, np.minimum(_seg_max(w_b, counts, starts), w_budget))
    a_need = np.minimum(_seg_max(L["ov_busy_io"], counts, starts), a_budget)
    w_port = (kpres[:, :, None] * _ceil(lanes * w3 / p.bram_port_bits)).sum(1)
    a_port = (kpres[:, :, None] * _ceil(2.0 * pin * a3 / p.bram_port_bits)).sum(1)
    bram = (np.maximum(_ceil(w_need / p.bram_bytes)[:, None], w_port)
            + np.maximum(_ceil(a_need / p.bram_bytes)[:, None], a_port))

    feas = ((lut <= dev.util_cap * dev.lut) & (ff <= dev.util_cap * dev.ff)
            & (dsp <= dev.dsp_cap * dev.dsp + 1e-9) & (bram <= dev.util_cap * dev.bram_equiv))

    # choose the array. Along the candidate list each shape is componentwise >= the previous one, and
    # compute cycles ceil(Cout/P_out) * red(P_in) never grow with P_in or P_out while memory cycles do
    # not depend on the shape, so the largest feasible candidate is also the fastest (auto); with a
    # given pe_array the first feasible step of the fold sequence is taken.
    if pe_array is None:
        ch = (C - 1) - np.argmax(feas[:, ::-1], axis=1)
        ch = np.where(feas.any(1), ch, 0)
    else:
        ch = np.where(feas.any(1), np.argmax(feas, axis=1), C - 1)
    ar = np.arange(A)
    cl = ch[arch]
    if isinstance(L, _Gathered) and L._terms["cin"].size * C < arch.size and not want_rows:
        # compute cycles and BRAM bytes once per (distinct row, candidate) with the array's full
        # output width, then gather them; rows of a minor array (narrower P_out) are redone below
        T, idx = L._terms, L._idx
        R = {k: T[k][:, None] for k in _OV_COMP_KEYS}
        cand = _ov_cand_terms({k: T[k][:, None] for k in _OV_CAND_KEYS}, cin_c[None, :], cout_c[None, :], dev)
        comp_t, bram_t = _ov_comp(R, *cand, cin_c[None, :], cout_c[None, :])
        flat = idx * C + cl  # = comp_t[idx, cl], as one flat take
        comp, bram_b = comp_t.ravel().take(flat), bram_t.ravel().take(flat)
        has_minor = minor.any(1)
        if has_minor.any():
            sel = np.flatnonzero(has_minor[arch])
            a_s, cl_s, i_s = arch[sel], cl[sel], idx[sel]
            kk_s = np.clip(T["kind"][i_s], 0, 2)
            Rs = {k: T[k][i_s] for k in _OV_COMP_KEYS}
            comp[sel], bram_b[sel] = _ov_comp(Rs, *(x[i_s, cl_s] for x in cand), cin_c[cl_s],
                                              pout.reshape(-1)[(a_s * 3 + kk_s) * C + cl_s])
    else:
        kk = np.clip(kind, 0, 2)
        pin_l = cin_c[cl]                                         # = pin[arch, kk, cl]
        pout_l = pout.reshape(-1)[(arch * 3 + kk) * C + cl]       # = pout[arch, kk, cl]
        V_l = cout_c[cl]                                          # = V[arch, cl]
        if isinstance(L, _Gathered) and L._terms["cin"].size * C < arch.size:
            # terms that depend on the row and the candidate only: once per (distinct row, candidate)
            T = L._terms
            cand = tuple(x[L._idx, cl] for x in _ov_cand_terms({k: T[k][:, None] for k in _OV_CAND_KEYS},
                                                                cin_c[None, :], cout_c[None, :], dev))
        else:
            cand = _ov_cand_terms(L, pin_l, V_l, dev)
        comp, bram_b = _ov_comp(L, *cand, pin_l, pout_l)
    bpc = dev.ddr_bandwidth_gbps * 1e9 / dev.clock_hz       # DDR bytes per cycle
    mem = ddr / bpc
    cyc = np.maximum(comp, mem) + np.where(idle, 0.0, dev.layer_overhead_cycles)
    lat = _seg_sum(cyc, counts, starts)
    out = _finish(L, A, dev, cyc, comp, mem, ddr, bram_b, lat, want_rows)
    out.update(lut=lut[ar, ch], ff=ff[ar, ch], dsp=dsp[ar, ch], bram=bram[ar, ch], feasible=feas[ar, ch],
               pe_in=cin_c[ch], pe_out=cout_c[ch], lanes=(kpres * lanes[ar, :, ch]).sum(1),
               folded=(ch > 0) if pe_array is not None else np.zeros(A, bool),
               throughput_fps=np.divide(1.0, out["latency_ms"] * 1e-3, out=np.zeros(A), where=out["latency_ms"] > 0))
    if not want_rows:
        return out, {}
    rows = dict(cycles=cyc, compute_cycles=comp, memory_cycles=mem, ddr_bytes=ddr, bram_bytes=bram_b,
                lanes=np.where(_IS_MAC[kind], pin_l * pout_l, V_l), **out.pop("_rows"))
    return out, rows


def _finish(L, A, dev: DeviceProfile, cyc, comp, mem, ddr, bram_b, lat_cycles_arch, want_rows: bool = True):
    """Energy and latency totals from the chosen per-layer cycles (shared by both styles)."""
    counts, starts = L["counts"], L["starts"]
    f = dev.clock_hz
    lat_s_l = cyc / f
    e_c = L["compute_pj"] * 1e-9                              # pJ -> mJ
    e_b = bram_b * dev.e_bram_pj_per_byte * 1e-9
    e_d = ddr * dev.e_ddr_pj_per_byte * 1e-9
    e_s = dev.static_power_w * lat_s_l * 1e3                  # J -> mJ
    lat_ms = lat_cycles_arch / f * 1e3
    ec, eb, ed, es = (_seg_sum(x, counts, starts) for x in (e_c, e_b, e_d, e_s))
    # dataflow latency is not the sum of stage times: rescale static energy to the arch latency
    lat_sum = _seg_sum(lat_s_l, counts, starts) * 1e3
    scale = np.divide(lat_ms, lat_sum, out=np.ones(A), where=lat_sum > 0)
    es = np.where(lat_sum > 0, es * scale, dev.static_power_w * lat_ms)
    energy = ec + eb + ed + es
    lat_safe = np.where(lat_ms > 0, lat_ms, np.inf)
    out = dict(energy_mj=energy, latency_ms=lat_ms, power_w=np.where(lat_ms > 0, energy / lat_safe, 0.0),
               onchip_dynamic_power_w=np.where(lat_ms > 0, (ec + eb) / lat_safe, 0.0),
               energy_compute_mj=ec, energy_bram_mj=eb, energy_ddr_mj=ed, energy_static_mj=es,
               ops=_seg_sum(L["ops_eff"], counts, starts), ddr_bytes=_seg_sum(ddr, counts, starts))
    if not want_rows:
        return out
    e_s = e_s * scale[L["arch"]]
    e_row = e_c + e_b + e_d + e_s
    tot = energy[L["arch"]]
    out["_rows"] = dict(energy_mj=e_row, share=np.divide(e_row, tot, out=np.zeros_like(e_row), where=tot > 0),
                        latency_ms=lat_s_l * 1e3, bound=np.where(mem > comp, 1, 0), ops=L["ops_eff"])
    return out


# --------------------------------------------------------------------------------------------
# dataflow: one engine per layer, lanes in proportion to work, throughput set by the slowest
# --------------------------------------------------------------------------------------------

def _dataflow(L, A, dev: DeviceProfile, p: CostParams, pe_array, mult_impl, want_rows: bool = True):
    """Per-layer engines; total lanes 2^k, the largest feasible k found by a per-architecture bisection
    (resources grow with k, so feasibility is monotone)."""
    top = p.dataflow_max_log2_lanes
    if pe_array is not None:
        total = int(np.prod(pe_array)) if not np.isscalar(pe_array) else int(pe_array)
        if total < 1:
            raise ValueError(f"pe_array must be positive, got {pe_array!r}")
        top = int(np.floor(np.log2(total)))
    pre = _df_prepare(L, A, dev, p)
    lo = np.full(A, -1)                         # largest known feasible exponent (-1: none yet)
    hi = np.full(A, top + 1)                    # smallest known infeasible exponent
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        mid = np.where(hi - lo > 1, mid, np.maximum(lo, 0))
        ok = _df_at(pre, L, A, dev, p, mid, mult_impl, full=False)["feasible"]
        act = hi - lo > 1
        lo = np.where(act & ok, mid, lo)
        hi = np.where(act & ~ok, mid, hi)
    k = np.maximum(lo, 0)
    res = _df_at(pre, L, A, dev, p, k, mult_impl, full=True, want_rows=want_rows)
    out, rows = res["out"], res["rows"]
    out["folded"] = (k < top) if pe_array is not None else np.zeros(A, bool)
    return out, rows


def _df_prepare(L, A, dev: DeviceProfile, p: CostParams) -> dict[str, Any]:
    """Candidate-independent terms of the dataflow style."""
    counts, starts, arch, kind = L["counts"], L["starts"], L["arch"], L["kind"]
    eng = ~L["idle"]
    ismac = _IS_MAC[kind]
    pool_red = np.where(L["is_pool"], _ceil(L["pool_win"] / float(p.dataflow_simd)), 1.0)
    work = np.where(ismac, L["ops_eff"], L["vec_work"] * pool_red * L["ratio"])
    work = np.where(eng, work, 0.0)
    W = _seg_sum(work, counts, starts)
    frac = np.divide(work, W[arch], out=np.zeros_like(work), where=W[arch] > 0)
    par = np.where(ismac & (L["map_pix"] > 0), np.maximum(1.0, work / np.maximum(L["map_pix"], 1.0)), np.maximum(work, 1.0))
    onchip = dev.util_cap * (dev.bram36 * p.bram_bytes + dev.uram * p.uram_bytes)
    rows_img = np.sqrt(np.maximum(L["pix"], 1.0))
    lb_frac = np.where(L["pix"] > 1, np.minimum(1.0, (np.sqrt(L["K"]) + 1.0) / rows_img), 1.0)
    linebuf = np.where(eng, L["in_b"] * lb_frac, 0.0)
    LB = _seg_sum(linebuf, counts, starts)
    total_w = _seg_sum(L["w_bytes"], counts, starts)
    resident = (total_w <= np.maximum(onchip - LB, 0.0)) & bool(dev.weights_resident)
    ddr = np.where(resident[arch] | ~eng, 0.0, L["w_bytes"])
    nz = counts > 0
    first, last = starts[nz], (starts + counts - 1)[nz]
    ddr[first] += L["in_b"][first]
    ddr[last] += L["out_b"][last]
    bram = _ceil((np.where(resident, total_w, 0.0) + LB) / p.bram_bytes)
    bpc = dev.ddr_bandwidth_gbps * 1e9 / dev.clock_hz
    # stage fill: line-buffer rows for spatial stages, the whole stage for non-spatial MAC stages
    # (linear, matmul), nothing for element-wise stages without spatial info (they stream)
    fill_frac = np.where(L["pix"] > 1, lb_frac, np.where(ismac, 1.0, 0.0))
    a, w, f = L["ab"], L["wb"], L["flt"]
    sidx = np.clip(L["sfu"], 0, _NS - 1)
    vecm = _IS_VECMOVE[kind] & eng
    mul = (kind == MUL) & eng
    return dict(eng=eng, ismac=ismac, work=work, frac=frac, par=par, ddr=ddr, bram=bram, bpc=bpc,
                ddr_cyc=_seg_sum(ddr, counts, starts) / bpc, fill_frac=fill_frac, sidx=sidx, vecm=vecm, mul=mul,
                dpm=_dsp_per_mult(a, w, f, dev.dsp_type, p), pack=np.where(f, 1.0, p.dsp_pack(np.maximum(a, w), dev.dsp_type)),
                s_dpm=_dsp_per_mult(a, a, f, dev.dsp_type, p),
                small=(~f) & (a + w <= p.lut_mult_max_sum_bits))


def _df_at(pre, L, A, dev: DeviceProfile, p: CostParams, k: np.ndarray, mult_impl: str, full: bool,
           want_rows: bool = True) -> dict[str, Any]:
    """Resources (and, if ``full``, cycles/energy) of the dataflow design with 2^k[a] lanes per architecture."""
    counts, starts, arch, kind = L["counts"], L["starts"], L["arch"], L["kind"]
    eng, ismac, vecm = pre["eng"], pre["ismac"], pre["vecm"]
    Ltot = (2.0 ** k)[arch]
    lanes = np.where(eng, np.clip(_ceil(pre["frac"] * Ltot), 1.0, pre["par"]), 0.0)
    a, w, f = L["ab"], L["wb"], L["flt"]
    lpb = np.array([p.sfu[c]["lut_per_bit"] for c in SFU_CLASSES])
    mu = np.array([p.sfu[c]["mult_units"] for c in SFU_CLASSES])
    s_dsp = np.where(vecm, lanes * mu[pre["sidx"]] * pre["s_dpm"], 0.0)
    budget = dev.dsp_cap * dev.dsp - _seg_sum(s_dsp, counts, starts)
    per_lane = pre["dpm"] / pre["pack"]
    elig = pre["mul"] & ~pre["small"] if mult_impl == "auto" else pre["mul"]
    if mult_impl == "lut":
        share = np.zeros(A)
    elif mult_impl == "dsp":
        share = np.ones(A)
    else:
        D = _seg_sum(np.where(elig, lanes * per_lane, 0.0), counts, starts)
        share = np.clip(np.divide(np.maximum(budget, 0.0), D, out=np.ones_like(D), where=D > 0), 0.0, 1.0)
    dsp_lanes = np.where(elig, lanes * share[arch], 0.0)
    q = np.minimum(float(p.dataflow_simd), np.maximum(lanes, 1.0))
    lut_l, ff_l = _lane_costs(np.clip(kind, 0, 2), a, w, f, q, lanes, dsp_lanes, p)
    macm = ismac & eng
    lut_l = np.where(macm, p.lut_scale * lut_l + p.array_ctrl_lut, 0.0)
    ff_l = np.where(macm, ff_l + p.array_ctrl_ff, 0.0)
    lut_l = lut_l + np.where(vecm, lanes * lpb[pre["sidx"]] * a + p.sfu_ctrl_lut, 0.0)
    ff_l = ff_l + np.where(vecm, lanes * 2.0 * a, 0.0)
    lut_l = lut_l + np.where(L["wino"] & eng, p.wino_transform_lut_per_bit * a * 2.0 * np.sqrt(np.maximum(lanes, 1.0)), 0.0)
    lut = _seg_sum(lut_l, counts, starts)
    ff = _seg_sum(ff_l, counts, starts)
    dsp = _ceil(_seg_sum(dsp_lanes * per_lane, counts, starts)) + _ceil(_seg_sum(s_dsp, counts, starts))
    bram = pre["bram"]
    feas = ((lut <= dev.util_cap * dev.lut) & (ff <= dev.util_cap * dev.ff)
            & (dsp <= dev.dsp_cap * dev.dsp + 1e-9) & (bram <= dev.util_cap * dev.bram_equiv))
    if not full:
        return {"feasible": feas}
    comp = np.where(eng, _ceil(pre["work"] / np.maximum(lanes, 1.0)), 0.0)
    iv = np.maximum(_seg_max(comp, counts, starts), pre["ddr_cyc"])
    lat = iv + _seg_sum(comp * pre["fill_frac"], counts, starts) + dev.layer_overhead_cycles
    ddr = pre["ddr"]
    mem_row = np.where(eng, ddr / pre["bpc"], 0.0)
    bram_b = np.where(eng, L["w_bytes"] + L["in_b"] + L["out_b"], 0.0)
    out = _finish(L, A, dev, comp, comp, mem_row, ddr, bram_b, lat, want_rows)
    out.update(lut=lut, ff=ff, dsp=dsp, bram=bram, feasible=feas, pe_in=2.0 ** k, pe_out=np.ones(A),
               lanes=_seg_sum(lanes, counts, starts),
               throughput_fps=np.divide(dev.clock_hz, iv, out=np.zeros(A), where=iv > 0))
    if not want_rows:
        return {"out": out, "rows": {}}
    rows = out.pop("_rows")
    rows["bound"] = np.where((pre["ddr_cyc"][arch] >= iv[arch]) & eng, 1, 0)
    rows.update(cycles=comp, compute_cycles=comp, memory_cycles=mem_row, ddr_bytes=ddr, bram_bytes=bram_b, lanes=lanes)
    return {"out": out, "rows": rows}
