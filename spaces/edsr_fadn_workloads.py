"""Config-level workloads of the ``edsr-fadn`` space: the cost model's rows without torch.

Contract (tested for every registered space in ``tests/hw_cost/test_space_contract.py``):
``edsr_fadn_workloads(arch, (N, C, H, W), default_bits=B, scale=S)`` equals, row for row and key for
key, ``hw_cost.trace_workloads(model, (N, C, H, W), default_bits=B)`` for ``model =
supernets.build("edsr-fadn", arch, input_shape=(C, H, W), scale=S)``.

It mirrors, and must be kept in step with, ``supernets/edsr.py`` (mean shift, head conv, body,
body conv with the global skip, ``Upsampler``, tail conv, mean add-back) and
``supernets/fadn.py`` (``EDSRResBlock``: ``Branch("resblock")`` = conv3x3 -> BN (adder only) ->
ReLU -> conv3x3 -> BN (adder only), then ``x + res_scale * body(x)``; ``make_conv``'s op mapping),
plus the tracer's rules (``hw_cost/trace.py``): BN, ReLU, the residual scaling, the adds and the
pixel shuffle consume the output of the op just before them and are ``fused``; the first mean
shift is not (nothing precedes it); ``1.0 * x`` is free. Spaces must not import supernets (torch),
hence the mirror; the contract test keeps them equal.

FADN (``fadn.enabled``) returns None: a dynamic block's cost depends on the branch mix measured on
data (``FADNBlock.hw_workload``), so such networks are costed by building and tracing them after
evaluation, as ManiDP-gated ResNets are.

Rows of standard torch layers carry no bits when ``default_bits`` is None (the consumer's
``hardware.default_bits`` applies, as it does to a traced model); quantised and adder convs carry
their own. Blocks are cached read-only (see ``spaces.fbnet_workloads``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from spaces.addernet_resnet_workloads import _frozen, _Rows
from spaces.workload_shapes import check_shape

UPSAMPLE_STEPS = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}  # supernets.edsr.Upsampler: conv + PixelShuffle(r) per step


def _eltwise(out: _Rows, name: str, elems: int, in_elems: int, fused: bool) -> None:
    d = {"op": "eltwise", "ops": elems, "params": 0, "in_elems": in_elems, "out_elems": elems, "name": name}
    if fused:
        d["fused"] = True
    out.std(d)


@lru_cache(maxsize=256)
def _head(n: int, cin: int, h: int, w: int, c: int, db: int | None) -> tuple:
    """``x - rgb_mean`` (a (1, C, 1, 1) buffer broadcast in) and the head conv."""
    out = _Rows(db)
    e = n * cin * h * w
    _eltwise(out, "sub", e, e + cin, fused=False)
    out.conv_op("head", "conv", 32, n, cin, c, h, w, 3, 1, bias=True)
    return _frozen(out.rows)


@lru_cache(maxsize=4096)
def _block(i: int, c: int, op: str, bits: int, res_scale: float, n: int, h: int, w: int, db: int | None) -> tuple:
    """``body.{i}``: an ``EDSRResBlock`` (BN only after adder convs, as ``supernets.fadn._norm``)."""
    out = _Rows(db)
    p = f"body.{i}."
    e = n * c * h * w
    out.conv_op(p + "body.conv1", op, bits, n, c, c, h, w, 3, 1, bias=True)
    if op == "adder":
        out.norm(p + "body.bn1", e, c)
    out.relu(p + "body.relu", e, fused=True)
    out.conv_op(p + "body.conv2", op, bits, n, c, c, h, w, 3, 1, bias=True)
    if op == "adder":
        out.norm(p + "body.bn2", e, c)
    if res_scale != 1.0:  # ``res_scale * body(x)``: one multiply per element in the conv's output stage
        _eltwise(out, p + "mul", e, e, fused=True)
    _eltwise(out, p + "add", e, 2 * e, fused=True)
    return _frozen(out.rows)


@lru_cache(maxsize=256)
def _tail(n: int, cin: int, h: int, w: int, c: int, scale: int, db: int | None) -> tuple:
    """Body conv + global skip, the upsampler (conv to ``C r^2`` + PixelShuffle(r) per step), the tail
    conv and the mean added back."""
    out = _Rows(db)
    e = n * c * h * w
    out.conv_op("body_conv", "conv", 32, n, c, c, h, w, 3, 1, bias=True)
    _eltwise(out, "add", e, 2 * e, fused=True)
    for j, r in enumerate(UPSAMPLE_STEPS[scale]):
        out.conv_op(f"upsample.{2 * j}", "conv", 32, n, c, r * r * c, h, w, 3, 1, bias=True)
        pe = n * r * r * c * h * w
        out.std({"op": "pixel_shuffle", "ops": 0, "params": 0, "in_elems": pe, "out_elems": pe,
                 "name": f"upsample.{2 * j + 1}", "fused": True})
        h, w = h * r, w * r
    out.conv_op("tail", "conv", 32, n, c, cin, h, w, 3, 1, bias=True)
    e = n * cin * h * w
    _eltwise(out, "add_1", e, e + cin, fused=True)
    return _frozen(out.rows)


def edsr_fadn_workload_blocks(arch: Mapping[str, Any], input_shape: Sequence[int], *, default_bits: int | None = None,
                              scale: int | None = None) -> tuple[tuple[Mapping[str, Any], ...], ...] | None:
    """``edsr_fadn_workloads`` as its cached blocks (head, one per body block, tail). None for FADN."""
    if arch.get("fadn.enabled"):
        return None
    s = int(arch["edsr.scale"])
    if scale is not None and int(scale) != s:
        raise ValueError(f"edsr.scale: the data is x{int(scale)} but the architecture upscales x{s}; "
                         f"fix edsr.scale={int(scale)} (or set the data's scale to {s})")
    n, cin, h, w = check_shape(input_shape)
    db = None if default_bits is None else int(default_bits)
    c, op, bits = int(arch["edsr.channels"]), str(arch["edsr.op"]), int(arch.get("edsr.bits", 32))
    res_scale = float(arch["edsr.res_scale"])
    out = [_head(n, cin, h, w, c, db)]
    out += [_block(i, c, op, bits, res_scale, n, h, w, db) for i in range(int(arch["edsr.blocks"]))]
    out.append(_tail(n, cin, h, w, c, s, db))
    return tuple(out)


def edsr_fadn_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, default_bits: int | None = None,
                        scale: int | None = None) -> list[Mapping[str, Any]] | None:
    """Workload dicts of ``edsr-fadn`` architecture ``arch`` on LR input ``(N, C, H, W)`` (see the module
    docstring); ``scale``: the data's upscaling factor, which must equal ``edsr.scale`` (as the builder checks)."""
    blocks = edsr_fadn_workload_blocks(arch, input_shape, default_bits=default_bits, scale=scale)
    return None if blocks is None else [r for b in blocks for r in b]


edsr_fadn_workloads.blocks = edsr_fadn_workload_blocks  # type: ignore[attr-defined]  (SearchSpace.workload_blocks)
