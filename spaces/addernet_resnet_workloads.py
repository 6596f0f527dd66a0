"""Config-level workloads of the ``addernet-resnet`` space: the cost model's rows without torch.

Why: the search screens thousands of candidates against hardware budgets before training any of
them. Building and tracing each one costs milliseconds and needs torch; this module writes the
same workload dicts (docs/architecture.md) straight from the architecture in pure Python, so
``hw_cost.estimate_batch`` can cost >= 10,000 architectures per second.

Contract: for a static architecture (``manidp.enabled`` false), ``addernet_resnet_workloads(arch,
(N, C, H, W), num_classes=K, default_bits=B)`` equals, row for row and key for key, what
``hw_cost.trace.trace_workloads(model, (N, C, H, W), default_bits=B)`` records for ``model =
supernets.build("addernet-resnet", arch, input_shape=(C, H, W), num_classes=K)``; the parity
test is ``tests/hw_cost/test_space_workloads.py``. It mirrors three sources, which must be kept in
step when they change:

* the network layout of ``supernets/resnet.py`` (stem conv-BN-ReLU, basic blocks, pooling, fc; the
  op mapping of ``make_op``; ``stage_width``);
* the ``hw_workload`` methods of ``supernets/ops`` (adder, winograd_adder, binary, quant_conv,
  quant_adder) and ``supernets/ops/_quant_utils.conv_workload``;
* the rows ``hw_cost/trace.py`` writes for ``nn.Conv2d``/``BatchNorm2d``/``ReLU``/
  ``AdaptiveAvgPool2d``/``Linear`` and the functional residual add, including its ``fused`` rule
  (a norm, ReLU or add that consumes the output of the op just before it).

Bits of standard torch layers: the tracer gives them ``default_bits`` (32 when None). With
``default_bits=None`` this module *omits* ``w_bits``/``a_bits`` on those rows instead, so whichever
``default_bits`` the consumer later passes to ``hw_cost.estimate``/``workloads_to_array`` applies
to them exactly as it would to a traced model (the search engine passes its hardware config's).

Classifier size: ``num_classes`` is not part of ``input_shape``. ``SearchSpace.workloads`` calls
this function as ``fn(arch, input_shape)``, so the fc row is sized for 10 classes unless the caller
passes ``num_classes``; the search engine knows the real count from its data set.

ManiDP (dynamic channel gates) returns None: a dynamic net's cost depends on the gates' measured
active ratios, so it is costed by building and tracing it (``search/engine.py`` falls back).
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from spaces.workload_shapes import check_shape, out_size

# Mirrors supernets/resnet.py (kept here: spaces must not import supernets, which imports torch).
BASE_WIDTHS = (16, 32, 64)
STRIDES = (1, 2, 2)

# Transform matrices of WinogradAdderConv2d's default set "balanced" (supernets/ops/winograd_adder.py,
# derived in techniques/addernet-family.md section 2.3, not the paper's published set): only their
# nonzero pattern and unit/non-unit coefficients matter for the transform-operation counts.
WINOGRAD_BALANCED_AT = ((-1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, 1.0))
WINOGRAD_BALANCED_BT = ((-1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, -1.0, 0.0, 1.0))


def winograd_transform_counts(AT: Sequence[Sequence[float]] = WINOGRAD_BALANCED_AT,
                              BT: Sequence[Sequence[float]] = WINOGRAD_BALANCED_BT) -> dict[str, int]:
    """Per-tile transform additions/multiplications of F(2x2, 3x3), counted as
    ``supernets.ops.winograd_adder.winograd_transform_additions`` does: a row with k nonzeros costs
    k-1 additions; ``B^T d B`` applies B^T's rows 8 times per tile, ``A^T M A`` A^T's rows 6 times."""
    b_row = sum(max(sum(1 for v in row if v != 0) - 1, 0) for row in BT)
    a_row = sum(max(sum(1 for v in row if v != 0) - 1, 0) for row in AT)
    non_unit = lambda t: sum(1 for row in t for v in row if v != 0 and abs(v) != 1)  # noqa: E731
    return {"input": 8 * b_row, "output": 6 * a_row, "input_mults": 8 * non_unit(BT), "output_mults": 6 * non_unit(AT)}


_WINO = winograd_transform_counts()


def stage_width(base: int, multiplier: float) -> int:
    """Channels of a stage, as ``supernets.resnet.stage_width``: base x multiplier, at least 4."""
    return max(4, int(round(base * multiplier)))


class _Rows:
    """Appends workload dicts in forward order (the order the tracer records them in)."""

    __slots__ = ("rows", "bits")

    def __init__(self, default_bits: int | None) -> None:
        self.rows: list[dict] = []
        self.bits: dict[str, int] = {} if default_bits is None else {"w_bits": int(default_bits), "a_bits": int(default_bits)}

    def std(self, d: dict) -> None:
        """A standard-torch-layer row: bits from default_bits (or left to the consumer)."""
        if self.bits:
            d.update(self.bits)
        self.rows.append(d)

    def conv_op(self, name: str, op: str, bits: int, n: int, cin: int, cout: int, h: int, w: int, k: int, stride: int,
                bias: bool = False) -> tuple[int, int]:
        """One conv-like layer of ``op`` (mapping of ``supernets.resnet.make_op``; ``bias`` only for
        ``conv``, as ``supernets.fadn.make_conv`` and the detector's ``neck_conv`` use it); returns (Ho, Wo)."""
        ho, wo = out_size(h, k, stride), out_size(w, k, stride)
        pix = n * ho * wo
        kk = k * k
        ie, oe = n * cin * h * w, n * cout * ho * wo
        b = cout if bias else 0
        if op == "conv" and bits >= 32 or op == "binary" and k == 1:
            self.std({"op": "conv", "ops": pix * cout * cin * kk, "params": cout * cin * kk + b, "in_channels": cin,
                      "out_channels": cout, "kernel": kk, "out_pixels": pix, "in_elems": ie, "out_elems": oe, "name": name})
        elif op == "conv":  # QuantConv2d: per-tensor, act_bits = bits
            d = _conv_workload("conv", n, cin, cout, kk, pix, ie, oe, bits, bits, name, quant_granularity="per_tensor")
            if bias:  # conv_workload: the bias is float32 (4 bytes per output channel)
                d["params"] += cout
                d["weight_bytes"] += 4 * cout
            self.rows.append(d)
        elif op == "winograd_adder" and k == 3 and stride == 1:
            tiles = n * ((ho + 1) // 2) * ((wo + 1) // 2)
            params = 16 * cin * cout
            in_t, out_t = _WINO["input"] * tiles * cin, _WINO["output"] * tiles * cout
            self.rows.append({
                "op": "winograd_adder", "ops": 16 * tiles * cin * cout, "w_bits": 32, "a_bits": 32, "params": params,
                "in_elems": ie, "out_elems": oe, "in_channels": cin, "out_channels": cout, "kernel": 9, "out_pixels": pix,
                "tiles": tiles, "ops_per_tile": 16, "transform_ops": in_t + out_t, "input_transform_ops": in_t,
                "output_transform_ops": out_t, "transform_mults": (_WINO["input_mults"] * cin + _WINO["output_mults"] * cout) * tiles,
                "direct_adder_ops": 9 * pix * cin * cout, "weight_bytes": 4 * params, "act_bytes": 4 * (ie + oe), "name": name,
            })
        elif op == "winograd_adder" or op == "adder" and bits >= 32:  # AdderConv2d (float)
            self.rows.append({"op": "adder_conv", "ops": pix * cout * cin * kk, "w_bits": 32, "a_bits": 32, "params": cout * cin * kk,
                              "in_elems": ie, "out_elems": oe, "in_channels": cin, "out_channels": cout, "kernel": kk,
                              "out_pixels": pix, "name": name})
        elif op == "adder":  # QuantAdderConv2d: one shared scale
            self.rows.append(_conv_workload("adder_conv", n, cin, cout, kk, pix, ie, oe, bits, bits, name, shared_scale=True))
        elif op == "binary":  # BinaryConv2d, binarised activations
            self.rows.append(_conv_workload("binary_conv", n, cin, cout, kk, pix, ie, oe, 1, 1, name, scale_ops=pix * cout))
        else:
            raise ValueError(f"op: expected one of conv, adder, winograd_adder, binary, found {op!r}")
        return ho, wo

    def norm(self, name: str, elems: int, ch: int) -> None:
        """BatchNorm2d right after the layer that produced its input: always fused here."""
        self.std({"op": "norm", "ops": elems, "params": 2 * ch, "in_elems": elems, "out_elems": elems, "name": name, "fused": True})

    def relu(self, name: str, elems: int, fused: bool) -> None:
        d = {"op": "eltwise", "ops": elems, "params": 0, "in_elems": elems, "out_elems": elems, "name": name}
        if fused:
            d["fused"] = True
        self.std(d)


def _conv_workload(op: str, n: int, cin: int, cout: int, kk: int, pix: int, ie: int, oe: int, w_bits: int, a_bits: int,
                   name: str, **extra: Any) -> dict:
    """The dict of ``supernets.ops._quant_utils.conv_workload`` (groups 1, no bias)."""
    d = {"op": op, "ops": pix * cout * cin * kk, "w_bits": w_bits, "a_bits": a_bits, "params": cout * cin * kk,
         "in_elems": ie, "out_elems": oe, "in_channels": cin, "out_channels": cout, "kernel": kk, "out_pixels": pix,
         "weight_bytes": -(-(cout * cin * kk * w_bits) // 8), "act_bytes": -(-((ie + oe) * a_bits) // 8), "name": name}
    d.update(extra)
    return d


def addernet_resnet_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10,
                                    default_bits: int | None = None) -> tuple[tuple[Mapping[str, Any], ...], ...] | None:
    """``addernet_resnet_workloads`` as its cached blocks (stem, one per stage, head): tuples of
    read-only rows shared between architectures (``hw_cost.blocks_to_array`` converts each once).
    None for ManiDP-gated architectures."""
    if arch.get("manidp.enabled"):
        return None
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, found {num_classes!r}")
    n, c, h, w = check_shape(input_shape)
    db = None if default_bits is None else int(default_bits)
    width0 = stage_width(BASE_WIDTHS[0], float(arch["stage1.width"]))
    out = [_stem_rows(n, c, h, w, width0, db)]
    prev, bi = width0, 0
    for s in (1, 2, 3):
        blocks = int(arch[f"stage{s}.blocks"])
        width = stage_width(BASE_WIDTHS[s - 1], float(arch[f"stage{s}.width"]))
        block, h, w = _stage_rows(s, arch[f"stage{s}.op"], int(arch.get(f"stage{s}.bits", 32)), width, blocks, prev,
                                  n, h, w, bi, db)
        out.append(block)
        prev, bi = width, bi + blocks
    out.append(_head_rows(n, prev, h, w, num_classes, db))
    return tuple(out)


def addernet_resnet_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10,
                              default_bits: int | None = None) -> list[Mapping[str, Any]] | None:
    """Workload dicts of ``addernet-resnet`` architecture ``arch`` on input ``(N, C, H, W)``.

    ``arch`` is a validated architecture of the space (``SearchSpace.workloads`` validates it).
    Returns None for ManiDP-gated (dynamic) architectures, which are costed on measured data.
    ``num_classes``: classifier outputs (not in ``input_shape``; 10 when the caller does not say).
    ``default_bits``: bits written on standard torch layers' rows; None leaves them out so the
    consumer's ``default_bits`` applies (see the module docstring).

    The rows of the stem, of each stage and of the head depend only on a few numbers, so they are
    built once and cached as read-only mappings (``types.MappingProxyType``): an architecture's
    list is a concatenation of cached blocks, and ``hw_cost.workloads_to_array`` converts each
    distinct row once. Copy a row (``dict(row)``) to change it.
    """
    blocks = addernet_resnet_workload_blocks(arch, input_shape, num_classes=num_classes, default_bits=default_bits)
    return None if blocks is None else [r for b in blocks for r in b]


addernet_resnet_workloads.blocks = addernet_resnet_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)


def _frozen(rows: list[dict]) -> tuple:
    return tuple(MappingProxyType(d) for d in rows)


@lru_cache(maxsize=1024)
def _stem_rows(n: int, c: int, h: int, w: int, width0: int, db: int | None) -> tuple:
    """nn.Conv2d(C, width0, 3, 1, 1) + BN + ReLU."""
    out = _Rows(db)
    out.conv_op("stem.0", "conv", 32, n, c, width0, h, w, 3, 1)
    e = n * width0 * h * w
    out.norm("stem.1", e, width0)
    out.relu("stem.2", e, fused=True)
    return _frozen(out.rows)


@lru_cache(maxsize=8192)
def _stage_rows(s: int, op: str, bits: int, width: int, blocks: int, prev: int, n: int, h: int, w: int, bi: int,
                db: int | None, prefix: str = "blocks.{bi}.") -> tuple[tuple, int, int]:
    """The basic blocks of stage ``s`` (block indices from ``bi``); returns (rows, Ho, Wo).
    ``prefix`` names a block's modules: ``{bi}`` the block's index in the network, ``{s0}`` the
    stage's (from 0), ``{b}`` the block's in its stage (the detector's ``backbone.stages.{s0}.{b}.``)."""
    out = _Rows(db)
    for b in range(blocks):
        stride = STRIDES[s - 1] if b == 0 else 1
        p = prefix.format(bi=bi, s0=s - 1, b=b)
        ho, wo = out.conv_op(p + "conv1", op, bits, n, prev, width, h, w, 3, stride)
        e = n * width * ho * wo
        out.norm(p + "bn1", e, width)
        out.relu(p + "relu", e, fused=True)
        out.conv_op(p + "conv2", op, bits, n, width, width, ho, wo, 3, 1)
        out.norm(p + "bn2", e, width)
        if stride != 1 or prev != width:  # shortcut op1x1 + BN runs after bn2: the add then consumes its output
            out.conv_op(p + "shortcut.0", op, bits, n, prev, width, h, w, 1, stride)
            out.norm(p + "shortcut.1", e, width)
        # the residual add consumes the output of the op just before it (bn2 or the shortcut's BN):
        # fused into that output stage, and so is the ReLU after it (one add per output element)
        out.std({"op": "eltwise", "ops": e, "params": 0, "in_elems": 2 * e, "out_elems": e, "name": p + "add", "fused": True})
        out.relu(p + "relu", e, fused=True)
        prev, h, w, bi = width, ho, wo, bi + 1
    return _frozen(out.rows), h, w


@lru_cache(maxsize=1024)
def _head_rows(n: int, prev: int, h: int, w: int, num_classes: int, db: int | None) -> tuple:
    """Global average pooling (a window of H x W per output) and the classifier."""
    out = _Rows(db)
    e = n * prev * h * w
    out.std({"op": "pool", "ops": e, "kernel": h * w, "params": 0, "in_elems": e, "out_elems": n * prev, "name": "pool"})
    out.std({"op": "linear", "ops": n * prev * num_classes, "params": prev * num_classes + num_classes, "in_channels": prev,
             "out_channels": num_classes, "kernel": 1, "out_pixels": n, "in_elems": n * prev, "out_elems": n * num_classes, "name": "fc"})
    return _frozen(out.rows)
