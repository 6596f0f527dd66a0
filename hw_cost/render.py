"""Plain-text rendering of a ``CostReport`` (used by ``abacus cost``)."""

from __future__ import annotations

from .report import CostReport


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _bits(w: float, a: float) -> str:
    return f"{w:g}" if w == a else f"w{w:g}/a{a:g}"


def format_report(report: CostReport, max_rows: int | None = None) -> str:
    """A per-layer table (name, op, bits, ops, cycles, bound, energy share) followed by the totals."""
    rows = report.rows if max_rows is None else report.rows[:max_rows]
    head = ("layer", "op", "bits", "ops", "cycles", "bound", "energy", "share")
    body = [(r.name, r.op, _bits(r.w_bits, r.a_bits), _si(r.ops), _si(r.cycles), r.bound if r.cycles > 0 else "fused",
             f"{r.energy_mj * 1e3:.3g} uJ", f"{100 * r.share:.1f}%") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 48)

    def line(cells):
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            c = c if len(c) <= w else c[: w - 1] + "~"
            out.append(c.ljust(w) if i < 3 or i == 5 else c.rjust(w))
        return "  ".join(out).rstrip()

    lines = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    if max_rows is not None and len(report.rows) > max_rows:
        lines.append(f"... {len(report.rows) - max_rows} more layers")
    u = report.utilisation
    pe = f"{report.pe_array[0]}x{report.pe_array[1]}" if report.style == "overlay" else f"{report.lanes:.0f} lanes"
    lines += [
        "",
        f"device {report.device}, style {report.style}, PE array {pe}{' (folded)' if report.folded else ''}, multipliers {report.mult_impl}",
        f"energy     {report.energy_mj:.4g} mJ  (compute {report.energy_compute_mj:.3g}, BRAM {report.energy_bram_mj:.3g}, "
        f"DDR {report.energy_ddr_mj:.3g}, static {report.energy_static_mj:.3g})",
        f"latency    {report.latency_ms:.4g} ms   throughput {report.throughput_fps:.4g} fps   power {report.power_w:.3g} W "
        f"(on-chip dynamic {report.onchip_dynamic_power_w:.3g} W)",
        f"resources  LUT {report.lut:,.0f} ({100 * u.get('lut', 0):.1f}%)  FF {report.ff:,.0f} ({100 * u.get('ff', 0):.1f}%)  "
        f"DSP {report.dsp:,.0f} ({100 * u.get('dsp', 0):.1f}%)  BRAM36 {report.bram:,.0f} ({100 * u.get('bram', 0):.1f}%)",
        f"feasible   {'yes' if report.feasible else 'NO: ' + (report.infeasible_reason or 'over the device')}",
    ]
    if report.uncosted:
        lines.append(f"uncosted   {len(report.uncosted)}: {', '.join(report.uncosted)}")
    return "\n".join(lines)
