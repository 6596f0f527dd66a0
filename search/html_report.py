"""Interactive Pareto plots (plotly): ``pareto.html`` for one search, the overlay for ``abacus compare``.

Why plotly: the static ``pareto.png`` cannot tell which point is which architecture; the HTML
shows trial number, arch id and the architecture on hover. The files are self-contained
(plotly.js embedded, ~4.5 MB): searches run on clusters without network access and the files
are opened later from MLflow's artifact store, where a CDN link might not resolve.

Plot dimension follows the number of objectives: 1 -> value per trial, 2 -> 2-D scatter with the
front as a staircase, 3 -> 3-D scatter, more -> a scatter matrix of all pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

GREY = "#b0b0b0"
FRONT = "#d62728"
# Tableau-10, so the overlay's colours match matplotlib's default cycle in the PNG.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def hover_text(number: int, arch_id: str, arch: Mapping[str, Any], values: Mapping[str, float] | None = None) -> str:
    """One trial's hover label: trial number, arch id, then one ``key=value`` per line (HTML breaks)."""
    lines = [f"trial {number}", f"arch {arch_id}"]
    if values:
        lines += [f"{k} = {v:.6g}" for k, v in values.items()]
    lines += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in arch.items()]
    return "<br>".join(lines)


def _axis_title(name: str, direction: str) -> str:
    return f"{name} ({direction})"


def _staircase(x: np.ndarray, y: np.ndarray, dir_x: str, dir_y: str) -> tuple[list[float], list[float]]:
    """The attainment surface through 2-D front points, as a step line (sorted along x in its
    preferred order, so the line runs from the best-x end to the worst-x end)."""
    order = np.argsort(x if dir_x == "minimize" else -x, kind="stable")
    xs, ys = x[order], y[order]
    sx: list[float] = []
    sy: list[float] = []
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        if i:
            sx.append(float(xi))
            sy.append(float(ys[i - 1]))
        sx.append(float(xi))
        sy.append(float(yi))
    return sx, sy


def _traces(go, values: np.ndarray, mask: np.ndarray, names: Sequence[str], directions: Sequence[str],
            texts: Sequence[str], label: str, colour: str, other_colour: str, group: str, show_others: bool) -> list:
    """Scatter traces of one point set: non-front points (faint) and the front (coloured)."""
    texts_arr = np.asarray(list(texts), dtype=object)
    d = values.shape[1]
    out = []
    parts = [(~mask, f"{label} trials" if label else "trials", other_colour, 6, 0.55)] if show_others else []
    parts.append((mask, f"{label} front" if label else "Pareto front", colour, 9, 1.0))
    for sel, name, col, size, opacity in parts:
        if not sel.any():
            continue
        v, t = values[sel], list(texts_arr[sel])
        common = dict(mode="markers", name=name, text=t, hovertemplate="%{text}<extra></extra>", legendgroup=group, opacity=opacity)
        if d == 1:
            idx = np.flatnonzero(sel)
            out.append(go.Scatter(x=idx, y=v[:, 0], marker=dict(color=col, size=size), **common))
        elif d == 2:
            out.append(go.Scatter(x=v[:, 1], y=v[:, 0], marker=dict(color=col, size=size), **common))
        elif d == 3:
            out.append(go.Scatter3d(x=v[:, 1], y=v[:, 2], z=v[:, 0], marker=dict(color=col, size=size * 0.6), **common))
        else:
            common.pop("mode")
            out.append(go.Splom(dimensions=[dict(label=n, values=v[:, i]) for i, n in enumerate(names)],
                                marker=dict(color=col, size=size * 0.7), diagonal_visible=False, **common))
    if d == 2 and mask.any():
        sx, sy = _staircase(values[mask, 1], values[mask, 0], directions[1], directions[0])
        out.append(go.Scatter(x=sx, y=sy, mode="lines", line=dict(color=colour, width=1, shape="linear"), opacity=0.6,
                              hoverinfo="skip", showlegend=False, legendgroup=group))
    return out


def _layout(fig, names: Sequence[str], directions: Sequence[str], title: str) -> None:
    d = len(names)
    if d == 1:
        fig.update_layout(xaxis_title="trial (order of completion)", yaxis_title=_axis_title(names[0], directions[0]))
    elif d == 2:
        fig.update_layout(xaxis_title=_axis_title(names[1], directions[1]), yaxis_title=_axis_title(names[0], directions[0]))
    elif d == 3:
        fig.update_layout(scene=dict(xaxis_title=_axis_title(names[1], directions[1]), yaxis_title=_axis_title(names[2], directions[2]),
                                     zaxis_title=_axis_title(names[0], directions[0])))
    fig.update_layout(title=title, template="plotly_white", hovermode="closest", legend=dict(itemclick="toggle"))


def _write(fig, path: Path, title: str = "") -> None:
    """Self-contained HTML (plotly.js inlined, no CDN) with a ``<title>`` (the browser tab and
    MLflow's artifact view name it), written then renamed."""
    import html as html_lib
    import re

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = fig.to_html(include_plotlyjs=True, full_html=True)
    plain = re.sub(r"<[^>]+>", " ", title.split("<br>")[0]).strip()
    if plain:
        text = text.replace("<head>", f"<head><title>{html_lib.escape(plain)}</title>", 1)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _reference_trace(go, reference: Sequence[float], names: Sequence[str]):
    """The hypervolume reference point as a black cross (2-D plots only)."""
    text = "reference point<br>" + "<br>".join(f"{n} = {v:.6g}" for n, v in zip(names, reference))
    return go.Scatter(x=[reference[1]], y=[reference[0]], mode="markers", name="reference point", text=[text],
                      hovertemplate="%{text}<extra></extra>", marker=dict(color="black", symbol="x", size=10))


def _check(values: np.ndarray, names: Sequence[str], directions: Sequence[str], n_texts: int, what: str) -> None:
    if values.ndim != 2 or values.shape[1] != len(names) or len(names) != len(directions) or len(names) == 0:
        raise ValueError(f"{what}: expected values of shape (n, {len(names)}) with one direction per objective, "
                         f"found shape {values.shape} and {len(directions)} direction(s)")
    if n_texts != len(values):
        raise ValueError(f"{what}: expected one hover text per point ({len(values)}), found {n_texts}")
    bad = [d for d in directions if d not in ("minimize", "maximize")]
    if bad:
        raise ValueError(f"{what}: expected directions 'minimize' or 'maximize', found {bad[0]!r}")


def write_pareto_html(path: str | Path, values: np.ndarray, front_mask: np.ndarray, objective_names: Sequence[str],
                      directions: Sequence[str], hover_texts: Sequence[str], title: str,
                      reference: Sequence[float] | None = None) -> Path:
    """All complete trials in grey, the front highlighted (and joined as a staircase in 2-D).

    ``values`` is (n_trials, n_objectives) in original units; ``hover_texts[i]`` labels row i
    (see ``hover_text``). The first objective is the vertical axis, as in ``pareto.png``.
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=float)
    mask = np.asarray(front_mask, dtype=bool)
    _check(values, objective_names, directions, len(hover_texts), "write_pareto_html")
    fig = go.Figure(_traces(go, values, mask, objective_names, directions, hover_texts, "", FRONT, GREY, "all", True))
    if reference is not None and len(objective_names) == 2:
        fig.add_trace(_reference_trace(go, reference, objective_names))
    _layout(fig, objective_names, directions, title)
    _write(fig, Path(path), title)
    return Path(path)


def write_overlay_html(path: str | Path, series: Sequence[Mapping[str, Any]], objective_names: Sequence[str],
                       directions: Sequence[str], title: str, reference: Sequence[float] | None = None) -> Path:
    """Several searches on one plot: each ``series`` item has ``label``, ``values`` (n, d),
    ``front_mask`` and ``hover_texts``; each gets its own colour, fronts bold, other trials faint.
    Clicking a legend entry hides that search."""
    import plotly.graph_objects as go

    traces = []
    for i, s in enumerate(series):
        values = np.asarray(s["values"], dtype=float).reshape(-1, len(objective_names))
        _check(values, objective_names, directions, len(s["hover_texts"]), f"write_overlay_html[{s['label']}]")
        colour = PALETTE[i % len(PALETTE)]
        traces += _traces(go, values, np.asarray(s["front_mask"], dtype=bool), objective_names, directions,
                          s["hover_texts"], str(s["label"]), colour, colour, f"s{i}", True)
    if reference is not None and len(objective_names) == 2:
        traces.append(_reference_trace(go, reference, objective_names))
    fig = go.Figure(traces)
    _layout(fig, objective_names, directions, title)
    _write(fig, Path(path), title)
    return Path(path)
