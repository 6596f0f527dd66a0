"""Config-level workloads of the ``detector`` space: the cost model's rows without torch.

Contract (tested for every registered space in ``tests/hw_cost/test_space_contract.py``):
``detector_workloads(arch, (N, C, H, W), num_classes=K, default_bits=B)`` equals, row for row and
key for key, ``hw_cost.trace_workloads(model, (N, C, H, W), default_bits=B)`` for ``model =
supernets.build("detector", arch, input_shape=(C, H, W), num_classes=K)``.

It mirrors, and must be kept in step with, ``supernets/detector.py`` (stride-2 conv stem; the
``addernet-resnet`` stages, whose rows come from ``spaces.addernet_resnet_workloads``; the FPN's
1x1 laterals, nearest upsampling and add, 3x3 outputs and stride-2 extra level; the dense head
run once per level: tower conv-GroupNorm-ReLU, classifier, regressor, ``relu(reg) * stride``) and
the tracer's rules (``hw_cost/trace.py``): norms, ReLUs, adds and the stride multiply that consume
the output of the op just before them are ``fused``; functional calls are named after the module
whose ``forward`` makes them, numbered from the second call on (``head.relu``, ``head.relu_1``).
Post-processing (decoding, NMS) is not part of the traced forward (host CPU) and has no rows.

Rows of standard torch layers carry no bits when ``default_bits`` is None (the consumer's
``hardware.default_bits`` applies, as it does to a traced model). Blocks are cached read-only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from spaces.addernet_resnet_workloads import BASE_WIDTHS, _frozen, _Rows, _stage_rows, stage_width
from spaces.workload_shapes import check_shape, out_size

FPN_STRIDES = (4, 8, 16)  # mirrors supernets.detector.FPN_STRIDES
STAGE_PREFIX = "backbone.stages.{s0}.{b}."


@lru_cache(maxsize=256)
def _stem(n: int, c: int, h: int, w: int, width0: int, db: int | None) -> tuple:
    out = _Rows(db)
    ho, wo = out.conv_op("backbone.stem.0", "conv", 32, n, c, width0, h, w, 3, 2)
    e = n * width0 * ho * wo
    out.norm("backbone.stem.1", e, width0)
    out.relu("backbone.stem.2", e, fused=True)
    return _frozen(out.rows)


@lru_cache(maxsize=4096)
def _fpn(n: int, c2: int, h2: int, w2: int, c3: int, h3: int, w3: int, f: int, bits: int, db: int | None) -> tuple:
    """Laterals, top-down nearest upsampling + add, output convs, the stride-2 extra level."""
    out = _Rows(db)
    out.conv_op("fpn.lateral.0", "conv", bits, n, c2, f, h2, w2, 1, 1, bias=True)
    out.conv_op("fpn.lateral.1", "conv", bits, n, c3, f, h3, w3, 1, 1, bias=True)
    e2, e3 = n * f * h2 * w2, n * f * h3 * w3
    out.std({"op": "upsample", "ops": 0, "params": 0, "in_elems": e3, "out_elems": e2, "name": "fpn.interpolate"})
    out.std({"op": "eltwise", "ops": e2, "params": 0, "in_elems": 2 * e2, "out_elems": e2, "name": "fpn.add", "fused": True})
    out.conv_op("fpn.output.0", "conv", bits, n, f, f, h2, w2, 3, 1, bias=True)
    out.conv_op("fpn.output.1", "conv", bits, n, f, f, h3, w3, 3, 1, bias=True)
    out.conv_op("fpn.extra", "conv", bits, n, f, f, h3, w3, 3, 2, bias=True)
    return _frozen(out.rows)


@lru_cache(maxsize=4096)
def _head(level: int, n: int, h: int, w: int, f: int, convs: int, bits: int, num_classes: int, db: int | None) -> tuple:
    """The shared head on one FPN level (its modules keep their names; functional calls are numbered)."""
    out = _Rows(db)
    e = n * f * h * w
    for j in range(convs):
        out.conv_op(f"head.tower.{3 * j}", "conv", bits, n, f, f, h, w, 3, 1, bias=True)
        out.std({"op": "norm", "ops": e, "params": 2 * f, "in_elems": e, "out_elems": e, "name": f"head.tower.{3 * j + 1}",
                 "fused": True})
        out.relu(f"head.tower.{3 * j + 2}", e, fused=True)
    out.conv_op("head.cls", "conv", bits, n, f, num_classes + 1, h, w, 3, 1, bias=True)
    out.conv_op("head.reg", "conv", bits, n, f, 4, h, w, 3, 1, bias=True)
    eb = n * 4 * h * w
    sfx = f"_{level}" if level else ""
    for fn in ("relu", "mul"):  # F.relu(reg) * stride, in the regressor's output stage
        out.std({"op": "eltwise", "ops": eb, "params": 0, "in_elems": eb, "out_elems": eb, "name": f"head.{fn}{sfx}", "fused": True})
    return _frozen(out.rows)


def detector_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10,
                             default_bits: int | None = None) -> tuple[tuple[Mapping[str, Any], ...], ...]:
    """``detector_workloads`` as its cached blocks (stem, three stages, FPN, head per level)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, found {num_classes!r}")
    n, c, h, w = check_shape(input_shape)
    if min(h, w) < FPN_STRIDES[-1]:
        raise ValueError(f"input_shape: height and width must be at least {FPN_STRIDES[-1]} (the coarsest FPN stride), "
                         f"found {(c, h, w)!r}")
    db = None if default_bits is None else int(default_bits)
    width0 = stage_width(BASE_WIDTHS[0], float(arch["stage1.width"]))
    out = [_stem(n, c, h, w, width0, db)]
    h, w = out_size(h, 3, 2), out_size(w, 3, 2)
    prev, bi, feats = width0, 0, []
    for s in (1, 2, 3):
        blocks = int(arch[f"stage{s}.blocks"])
        width = stage_width(BASE_WIDTHS[s - 1], float(arch[f"stage{s}.width"]))
        rows, h, w = _stage_rows(s, arch[f"stage{s}.op"], int(arch.get(f"stage{s}.bits", 32)), width, blocks, prev,
                                 n, h, w, bi, db, STAGE_PREFIX)
        out.append(rows)
        feats.append((width, h, w))
        prev, bi = width, bi + blocks
    f, bits = int(arch["fpn.channels"]), int(arch["head.bits"])
    (c2, h2, w2), (c3, h3, w3) = feats[1], feats[2]
    out.append(_fpn(n, c2, h2, w2, c3, h3, w3, f, bits, db))
    levels = ((h2, w2), (h3, w3), (out_size(h3, 3, 2), out_size(w3, 3, 2)))
    convs = int(arch["head.convs"])
    out += [_head(i, n, lh, lw, f, convs, bits, num_classes, db) for i, (lh, lw) in enumerate(levels)]
    return tuple(out)


def detector_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10,
                       default_bits: int | None = None) -> list[Mapping[str, Any]]:
    """Workload dicts of ``detector`` architecture ``arch`` on input ``(N, C, H, W)`` (see the module
    docstring); ``num_classes`` excludes the background class, as the builder's."""
    return [r for b in detector_workload_blocks(arch, input_shape, num_classes=num_classes, default_bits=default_bits) for r in b]


detector_workloads.blocks = detector_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)
