"""Front door: ``estimate`` (one model or workload list) and ``estimate_batch`` (many, in numpy)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .devices import DeviceProfile, get_device
from .engine import run_engine
from .params import CostParams, resolve_params
from .report import CostReport, LayerRow
from .workload import OP_NAMES, WorkloadBatch, check_array, workloads_to_array

BATCH_KEYS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram", "feasible",
              "onchip_dynamic_power_w", "energy_compute_mj", "energy_bram_mj", "energy_ddr_mj", "energy_static_mj",
              "ops", "ddr_bytes", "lanes", "pe_in", "pe_out", "folded")


def _is_torch_module(obj: Any) -> bool:
    return hasattr(obj, "named_modules") and hasattr(obj, "forward") and callable(getattr(obj, "named_modules"))


def estimate(model_or_workloads: Any, input_shape: Sequence[int] | None = None, device: str | DeviceProfile = "zcu104", *,
             style: str = "overlay", pe_array: tuple[int, int] | None = None, default_bits: int | None = None,
             mult_impl: str = "auto", params: CostParams | Mapping[str, Any] | None = None) -> CostReport:
    """Estimate energy, latency, resources and feasibility of one architecture on ``device``.

    ``model_or_workloads`` is an ``nn.Module`` (traced by one forward pass on random input of
    ``input_shape``, batch included) or a list of workload dicts (docs/architecture.md), in which
    case ``input_shape`` may be None. ``default_bits`` sets the bits of layers that do not state
    theirs (standard torch layers: otherwise 32 = float32). ``mult_impl`` places multipliers on DSPs
    ("dsp"), LUTs ("lut") or DSPs while they last ("auto").
    """
    dev = get_device(device)
    prm = resolve_params(params)
    uncosted: list[str] = []
    if _is_torch_module(model_or_workloads):
        if input_shape is None:
            raise ValueError("input_shape is required to trace an nn.Module, got None")
        from .trace import trace_workloads  # torch is imported only here

        wls, uncosted = trace_workloads(model_or_workloads, input_shape, default_bits=default_bits)
    elif isinstance(model_or_workloads, Mapping):
        wls = [model_or_workloads]
    elif isinstance(model_or_workloads, (list, tuple)):
        wls = list(model_or_workloads)
    else:
        raise TypeError(f"model_or_workloads must be an nn.Module or a list of workload dicts, got {type(model_or_workloads).__name__}")
    arr, names, unc = workloads_to_array([wls], default_bits=default_bits)
    uncosted = list(uncosted) + unc[0]
    batch = int(input_shape[0]) if input_shape is not None and len(input_shape) > 1 else 1
    agg, rows = run_engine(arr, 1, dev, prm, style=style, pe_array=pe_array, mult_impl=mult_impl)
    layer_rows = [
        LayerRow(name=names[0][i], op=OP_NAMES[int(arr["op"][i])], w_bits=float(arr["w_bits"][i]),
                 a_bits=float(arr["a_bits"][i]), ops=float(rows["ops"][i]), cycles=float(rows["cycles"][i]),
                 bound="memory" if rows["bound"][i] else "compute", energy_mj=float(rows["energy_mj"][i]),
                 share=float(rows["share"][i]), latency_ms=float(rows["latency_ms"][i]), lanes=float(rows["lanes"][i]),
                 ddr_bytes=float(rows["ddr_bytes"][i]))
        for i in range(arr.size)
    ]
    g = {k: (v[0].item() if isinstance(v, np.ndarray) else v) for k, v in agg.items()}
    util = {"lut": g["lut"] / dev.lut, "ff": g["ff"] / dev.ff, "dsp": g["dsp"] / max(dev.dsp, 1),
            "bram": g["bram"] / max(dev.bram_equiv, 1)}
    reason = "" if g["feasible"] else infeasible_reason(util, dev, style)
    if reason:  # a design that cannot be built has no latency or energy: report why instead
        for k in TIMED_KEYS:
            g[k] = float("nan")
    return CostReport(
        energy_mj=float(g["energy_mj"]), latency_ms=float(g["latency_ms"]), throughput_fps=float(g["throughput_fps"]) * batch,
        power_w=float(g["power_w"]), lut=float(g["lut"]), ff=float(g["ff"]), dsp=float(g["dsp"]), bram=float(g["bram"]),
        feasible=bool(g["feasible"]), rows=layer_rows, uncosted=uncosted, device=dev.name, style=style, mult_impl=mult_impl,
        pe_array=(int(g["pe_in"]), int(g["pe_out"])), folded=bool(g["folded"]), lanes=float(g["lanes"]),
        onchip_dynamic_power_w=float(g["onchip_dynamic_power_w"]), energy_compute_mj=float(g["energy_compute_mj"]),
        energy_bram_mj=float(g["energy_bram_mj"]), energy_ddr_mj=float(g["energy_ddr_mj"]),
        energy_static_mj=float(g["energy_static_mj"]), ops=float(g["ops"]), ddr_bytes=float(g["ddr_bytes"]),
        utilisation=util, infeasible_reason=reason,
    )


# what an infeasible design does not have (NaN in its report and in estimate_batch's arrays)
TIMED_KEYS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "onchip_dynamic_power_w", "energy_compute_mj",
              "energy_bram_mj", "energy_ddr_mj", "energy_static_mj")


def infeasible_reason(util: Mapping[str, float], dev: DeviceProfile, style: str) -> str:
    """One line naming each resource over its usable share of ``dev`` (why no design fits)."""
    caps = {"lut": dev.util_cap, "ff": dev.util_cap, "bram": dev.util_cap, "dsp": dev.dsp_cap}
    over = [f"{k.upper()} {100 * util[k]:.0f} % of the device (usable {100 * caps[k]:.0f} %)"
            for k in ("lut", "ff", "dsp", "bram") if util[k] > caps[k] + 1e-9]
    what = "even the smallest design" if style == "overlay" else "even one lane per layer"
    return f"infeasible on {dev.name} ({style}): {what} needs " + ", ".join(over) if over else f"infeasible on {dev.name} ({style})"


def estimate_batch(batch: Sequence[Sequence[Mapping[str, Any]]] | np.ndarray | WorkloadBatch, device: str | DeviceProfile = "zcu104", *,
                   style: str = "overlay", pe_array: tuple[int, int] | None = None, default_bits: int | None = None,
                   mult_impl: str = "auto", params: CostParams | Mapping[str, Any] | None = None,
                   n_arch: int | None = None, batch_size: int = 1, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Cost many architectures at once; returns a dict of numpy arrays (one entry per architecture).

    ``batch`` is a list of workload lists, a structured array with ``hw_cost.WORKLOAD_DTYPE``
    (``arch`` sorted; build one with ``hw_cost.workloads_to_array``) or a ``hw_cost.WorkloadBatch``
    (``hw_cost.blocks_to_array``: the fastest, each distinct row's terms computed once). Same
    numbers as ``estimate`` on the same workloads, bit for bit. Layers with unknown ops are skipped
    here; ``n_uncosted`` counts them.
    """
    dev = get_device(device)
    prm = resolve_params(params)
    table = idx = None
    if isinstance(batch, WorkloadBatch):
        table, idx, arch = batch.table, batch.idx, batch.arch
        n = int(batch.n_arch if n_arch is None else n_arch)
        n_unc = np.zeros(n)
    elif isinstance(batch, np.ndarray):
        arr = check_array(batch)
        n = int(n_arch if n_arch is not None else (arr["arch"].max() + 1 if arr.size else 0))
        n_unc = np.zeros(n)
    else:
        arr, _, unc = workloads_to_array(list(batch), default_bits=default_bits)
        n = len(batch)
        n_unc = np.array([len(u) for u in unc], dtype=np.float64)
    out: dict[str, list[np.ndarray]] = {k: [] for k in BATCH_KEYS}
    if table is None:
        arch = arr["arch"]
    for lo in range(0, max(n, 1) if n else 0, chunk):
        hi = min(n, lo + chunk)
        a, b = np.searchsorted(arch, lo, "left"), np.searchsorted(arch, hi, "left")
        if table is None:
            agg, _ = run_engine(arr[a:b], hi - lo, dev, prm, style=style, pe_array=pe_array, mult_impl=mult_impl,
                                arch_offset=lo, want_rows=False)
        else:
            agg, _ = run_engine(None, hi - lo, dev, prm, style=style, pe_array=pe_array, mult_impl=mult_impl,
                                arch_offset=lo, rows_of=(table, idx[a:b], arch[a:b]), want_rows=False)
        for k in BATCH_KEYS:
            out[k].append(np.asarray(agg[k], dtype=np.float64))
    res = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    res["throughput_fps"] = res["throughput_fps"] * batch_size
    res["feasible"] = res["feasible"].astype(bool)
    for k in TIMED_KEYS:  # infeasible designs have no latency or energy (NaN), as in ``estimate``
        res[k] = np.where(res["feasible"], res[k], np.nan)
    res["folded"] = res["folded"].astype(bool)
    res["n_uncosted"] = n_unc
    return res


def estimate_reports(batch: Sequence[Sequence[Mapping[str, Any]]] | np.ndarray | WorkloadBatch, device: str | DeviceProfile = "zcu104", *,
                     style: str = "overlay", pe_array: tuple[int, int] | None = None, default_bits: int | None = None,
                     mult_impl: str = "auto", params: CostParams | Mapping[str, Any] | None = None,
                     n_arch: int | None = None, batch_size: int = 1) -> list[CostReport]:
    """One summary ``CostReport`` per architecture from the batch engine (``estimate_batch``'s numbers).

    The fast path from architectures to reports: the totals, resources, utilisation, feasibility and
    infeasibility reason of each, without per-layer rows (``rows`` is empty; ``estimate`` on one
    architecture gives them, with the same totals)."""
    dev = get_device(device)
    res = estimate_batch(batch, dev, style=style, pe_array=pe_array, default_bits=default_bits, mult_impl=mult_impl,
                         params=params, n_arch=n_arch, batch_size=batch_size)
    n = res["latency_ms"].size
    caps = {"lut": float(dev.lut), "ff": float(dev.ff), "dsp": float(max(dev.dsp, 1)), "bram": float(max(dev.bram_equiv, 1))}
    util = [dict(zip(caps, u)) for u in zip(*((res[k] / caps[k]).tolist() for k in caps))]
    feas = res["feasible"].tolist()
    pe = list(zip(res["pe_in"].astype(np.int64).tolist(), res["pe_out"].astype(np.int64).tolist()))
    reasons = ["" if ok else infeasible_reason(u, dev, style) for ok, u in zip(feas, util)]
    # one column list per field, zipped into the reports' attribute dicts: no per-field Python work
    # per architecture beyond the dict itself (``CostReport.__init__`` would run 28 assignments)
    fields = [k for k in CostReport.__dataclass_fields__ if k in res and k not in ("feasible", "folded")]
    cols = [res[k].tolist() for k in fields] + [feas, res["folded"].tolist(), pe, util, reasons]
    keys = (*fields, "feasible", "folded", "pe_array", "utilisation", "infeasible_reason")
    const = dict(device=dev.name, style=style, mult_impl=mult_impl)
    new = object.__new__
    out = []
    for vals in zip(*cols):
        rep = new(CostReport)
        d = dict(zip(keys, vals))
        d.update(const)
        d["rows"], d["uncosted"] = [], []
        rep.__dict__ = d
        out.append(rep)
    if n and CostReport.__dataclass_fields__.keys() - out[0].__dict__.keys():  # a field added to CostReport
        raise AssertionError(f"estimate_reports: fields not set {sorted(CostReport.__dataclass_fields__.keys() - out[0].__dict__.keys())}")
    return out
