"""The fast cost path of ``tiny-sepnet``: its workload rows written from the architecture, no torch.

``SearchSpace(workloads_fn="abacus_example_space.workloads:sepnet_workloads")`` lets the search
cost thousands of candidates without building them. Contract (checked for every registered space by
``tests/hw_cost/test_space_contract.py``): the rows cost the same as tracing the built model, so they
mirror ``model.build`` layer by layer, in forward order, with the tracer's names and fusion rule.

* ``input_shape`` is (N, C, H, W) here, batch included; the builder gets (C, H, W).
* Standard torch layers' rows carry no ``w_bits``/``a_bits``: the consumer's ``hardware.default_bits``
  applies to them exactly as to a traced model.
* BN and ReLU straight after the layer that produced their input are ``fused``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def _out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def sepnet_workloads(arch: Mapping[str, Any], input_shape: Sequence[int], *, num_classes: int = 10) -> list[dict]:
    n, c, h, w = (int(v) for v in input_shape)
    rows: list[dict] = []
    i = 0  # index of the module in the builder's nn.Sequential (the tracer names rows by it)
    for b in range(1, 4):
        k, width = int(arch[f"block{b}.kernel"]), int(arch[f"block{b}.width"])
        ho, wo = _out(h, k, 1 if b == 1 else 2), _out(w, k, 1 if b == 1 else 2)
        px = n * ho * wo
        rows += [
            # SepConv2d.hw_workload, named "<module>.<its name>"
            {"op": "dwconv", "ops": px * c * k * k, "params": c * k * k, "in_elems": n * c * h * w, "out_elems": px * c,
             "in_channels": c, "out_channels": c, "kernel": k * k, "out_pixels": px, "name": f"{i}.depthwise"},
            {"op": "conv", "ops": px * c * width, "params": c * width, "in_elems": px * c, "out_elems": px * width,
             "in_channels": c, "out_channels": width, "kernel": 1, "out_pixels": px, "name": f"{i}.pointwise"},
            # BatchNorm2d and ReLU consume the pointwise conv's output: fused into its output stage
            {"op": "norm", "ops": px * width, "params": 2 * width, "in_elems": px * width, "out_elems": px * width,
             "name": f"{i + 1}", "fused": True},
            {"op": "eltwise", "ops": px * width, "params": 0, "in_elems": px * width, "out_elems": px * width,
             "name": f"{i + 2}", "fused": True},
        ]
        c, h, w, i = width, ho, wo, i + 3
    hidden = int(arch["head.hidden"])
    e = n * c * h * w
    rows += [
        {"op": "pool", "ops": e, "kernel": h * w, "params": 0, "in_elems": e, "out_elems": n * c, "name": f"{i}"},
        # i + 1 is nn.Flatten: no cost, no row
        {"op": "linear", "ops": n * c * hidden, "params": c * hidden + hidden, "in_channels": c, "out_channels": hidden,
         "kernel": 1, "out_pixels": n, "in_elems": n * c, "out_elems": n * hidden, "name": f"{i + 2}"},
        {"op": "eltwise", "ops": n * hidden, "params": 0, "in_elems": n * hidden, "out_elems": n * hidden,
         "name": f"{i + 3}", "fused": True},
        {"op": "linear", "ops": n * hidden * num_classes, "params": hidden * num_classes + num_classes,
         "in_channels": hidden, "out_channels": num_classes, "kernel": 1, "out_pixels": n, "in_elems": n * hidden,
         "out_elems": n * num_classes, "name": f"{i + 4}"},
    ]
    return rows
