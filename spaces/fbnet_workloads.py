"""Config-level workloads of the ``fbnet`` space: the cost model's rows without torch.

Contract (tested for every registered space in ``tests/hw_cost/test_space_contract.py``):
``fbnet_workloads(arch, (N, C, H, W), num_classes=K, default_bits=B, setting=S)`` equals, row for
row and key for key, ``hw_cost.trace_workloads(model, (N, C, H, W), default_bits=B)`` for ``model =
supernets.build("fbnet", arch, input_shape=(C, H, W), num_classes=K, setting=S)``.

Rows follow the tracer's rules (``hw_cost/trace.py``): BN, ReLU, the channel shuffle and the
residual add consume the output of the op just before them and are ``fused``; an identity ``skip``
writes nothing. With ``default_bits=None`` the rows carry no bits, so the consumer's
``hardware.default_bits`` applies exactly as it does to a traced model.

Each layer's rows depend only on (position, op, input shape, options), so they are built once and
cached as read-only mappings (``types.MappingProxyType``); an architecture's list is the
concatenation of 22 cached blocks. ``hw_cost.workloads_to_array`` converts each distinct read-only
row once, which is what makes the arch -> cost path run at >= 10,000 architectures/s. Copy a row
(``dict(row)``) to change it.
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from spaces.fbnet import CHANNELS, N_LAYERS, STEM_CHANNELS, check_setting, layer_plan, parse_op
from spaces.workload_shapes import check_shape, out_size


class _Writer:
    """Appends rows in forward order; ``bits`` is {} when the consumer's default applies."""

    def __init__(self, n: int, bits: dict) -> None:
        self.n, self.bits, self.rows = n, bits, []

    def conv(self, name: str, cin: int, cout: int, h: int, w: int, k: int, stride: int, groups: int = 1) -> tuple[int, int]:
        ho, wo = out_size(h, k, stride), out_size(w, k, stride)
        pix = self.n * ho * wo
        cin_g = cin // groups
        dw = groups == cin and groups > 1 and cout % cin == 0
        self.rows.append({"op": "dwconv" if dw else "conv", "ops": pix * cout * cin_g * k * k, "params": cout * cin_g * k * k,
                          "in_channels": cin if dw else cin_g, "out_channels": cout, "kernel": k * k, "out_pixels": pix,
                          "in_elems": self.n * cin * h * w, "out_elems": pix * cout, "name": name, **self.bits})
        return ho, wo

    def fused(self, name: str, op: str, elems: int, params: int = 0, in_elems: int | None = None, ops: int | None = None) -> None:
        self.rows.append({"op": op, "ops": elems if ops is None else ops, "params": params,
                          "in_elems": elems if in_elems is None else in_elems, "out_elems": elems,
                          "name": name, "fused": True, **self.bits})

    def conv_bn_relu(self, prefix: str, cin: int, cout: int, h: int, w: int, k: int, stride: int) -> tuple[int, int]:
        ho, wo = self.conv(prefix + "conv", cin, cout, h, w, k, stride)
        e = self.n * cout * ho * wo
        self.fused(prefix + "bn", "norm", e, 2 * cout)
        self.fused(prefix + "relu", "eltwise", e)
        return ho, wo


def _frozen(rows: list[dict]) -> tuple:
    return tuple(MappingProxyType(d) for d in rows)


@lru_cache(maxsize=4096)
def _layer_rows(i: int, op: str, n: int, h: int, w: int, setting: str, bits: tuple) -> tuple[tuple[dict, ...], int, int]:
    """Rows of searchable layer ``i`` (0-based) for input (n, C_in, h, w); returns (rows, Ho, Wo)."""
    cin, cout, stride = layer_plan(setting)[i]
    wr = _Writer(n, dict(bits))
    p = f"cells.{i}."
    spec = parse_op(op)
    if spec is None:
        if stride != 1 or cin != cout:
            h, w = wr.conv_bn_relu(p, cin, cout, h, w, 1, stride)
        return _frozen(wr.rows), h, w
    k, e, g = spec
    mid = cin * e
    wr.conv(p + "conv1", cin, mid, h, w, 1, 1, g)
    el = n * mid * h * w
    wr.fused(p + "bn1", "norm", el, 2 * mid)
    wr.fused(p + "relu1", "eltwise", el)
    if g > 1:
        wr.fused(p + "shuffle", "pixel_shuffle", el, ops=0)
    ho, wo = wr.conv(p + "conv2", mid, mid, h, w, k, stride, mid)
    el = n * mid * ho * wo
    wr.fused(p + "bn2", "norm", el, 2 * mid)
    wr.fused(p + "relu2", "eltwise", el)
    wr.conv(p + "conv3", mid, cout, ho, wo, 1, 1, g)
    eo = n * cout * ho * wo
    wr.fused(p + "bn3", "norm", eo, 2 * cout)
    if cin == cout and stride == 1:
        # the residual ``y + x`` (a functional call in the block's forward), fused like BN and ReLU
        wr.rows.append({"op": "eltwise", "ops": eo, "params": 0, "in_elems": 2 * eo, "out_elems": eo,
                        "name": f"cells.{i}.add", "fused": True, **wr.bits})
    return _frozen(wr.rows), ho, wo


@lru_cache(maxsize=64)
def _stem(n: int, c: int, h: int, w: int, setting: str, bits: tuple) -> tuple[tuple[dict, ...], int, int]:
    wr = _Writer(n, dict(bits))
    h, w = wr.conv_bn_relu("stem.", c, STEM_CHANNELS, h, w, 3, check_setting(setting)[0])
    return _frozen(wr.rows), h, w


@lru_cache(maxsize=64)
def _tail(n: int, h: int, w: int, setting: str, bits: tuple, num_classes: int) -> tuple[dict, ...]:
    """Header conv-BN-ReLU, global average pooling (a window of H x W per output) and the classifier."""
    header = check_setting(setting)[2]
    wr = _Writer(n, dict(bits))
    wr.conv_bn_relu("header.", CHANNELS[-1], header, h, w, 1, 1)
    e = n * header * h * w
    wr.rows.append({"op": "pool", "ops": e, "kernel": h * w, "params": 0, "in_elems": e, "out_elems": n * header,
                    "name": "pool", **wr.bits})
    wr.rows.append({"op": "linear", "ops": n * header * num_classes, "params": header * num_classes + num_classes,
                    "in_channels": header, "out_channels": num_classes, "kernel": 1, "out_pixels": n,
                    "in_elems": n * header, "out_elems": n * num_classes, "name": "fc", **wr.bits})
    return _frozen(wr.rows)


_OP_LABELS = tuple(f"layer{i + 1}.op" for i in range(N_LAYERS))


def fbnet_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 100,
                          default_bits: int | None = None, setting: str = "cifar") -> tuple[tuple[Mapping[str, Any], ...], ...]:
    """``fbnet_workloads`` as its cached blocks (stem, 22 layers, tail), each a tuple of read-only rows
    shared between architectures: ``hw_cost.blocks_to_array`` converts each distinct block once."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, found {num_classes!r}")
    n, c, h, w = check_shape(input_shape)
    bits = () if default_bits is None else (("w_bits", int(default_bits)), ("a_bits", int(default_bits)))
    stem, h, w = _stem(n, c, h, w, setting, bits)
    out = [stem]
    for i, label in enumerate(_OP_LABELS):
        block, h, w = _layer_rows(i, arch[label], n, h, w, setting, bits)
        out.append(block)
    out.append(_tail(n, h, w, setting, bits, num_classes))
    return tuple(out)


def fbnet_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 100,
                    default_bits: int | None = None, setting: str = "cifar") -> list[Mapping[str, Any]]:
    """Workload dicts of ``fbnet`` architecture ``arch`` on input ``(N, C, H, W)`` (see the module docstring)."""
    return [r for b in fbnet_workload_blocks(arch, input_shape, num_classes=num_classes, default_bits=default_bits,
                                             setting=setting) for r in b]


fbnet_workloads.blocks = fbnet_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)
