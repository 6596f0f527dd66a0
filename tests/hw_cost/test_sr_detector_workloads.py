"""``edsr-fadn`` and ``detector`` workloads written without torch equal the tracer's rows, key for key,
on architectures forced through every op / bits / scale / head variant (the registry-wide contract
test samples only a few architectures per space)."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

import spaces  # noqa: E402
import supernets  # noqa: E402
from hw_cost.trace import trace_workloads  # noqa: E402
from spaces.detector_workloads import detector_workloads  # noqa: E402
from spaces.edsr_fadn_workloads import edsr_fadn_workloads  # noqa: E402


def _same(got, model, shape, db):
    ref, unc = trace_workloads(model, shape, default_bits=db)
    assert not unc
    assert [dict(r) for r in got] == ref


def test_edsr_rows_equal_tracer_rows():
    sp = spaces.get_space("edsr-fadn")
    for (op, bits), res_scale, scale in itertools.product([("conv", 32), ("conv", 8), ("adder", 32), ("adder", 4)],
                                                         (1.0, 0.1), (2, 3, 4)):
        arch = sp.complete({"edsr.op": op, "edsr.bits": bits, "edsr.res_scale": res_scale, "edsr.scale": scale,
                            "edsr.blocks": 2, "edsr.channels": 8})
        for shape, db in (((1, 3, 6, 6), None), ((2, 1, 5, 7), 8)):
            model = supernets.build(sp, arch, input_shape=shape[1:], scale=scale)
            _same(edsr_fadn_workloads(arch, shape, default_bits=32 if db is None else db, scale=scale), model, shape, db)


def test_edsr_fadn_and_scale_mismatch():
    sp = spaces.get_space("edsr-fadn")
    assert sp.workloads(sp.preset("fadn-edsr-baseline"), (1, 3, 8, 8)) is None  # dynamic: costed on measured data
    with pytest.raises(ValueError, match="edsr.scale"):
        sp.workloads(sp.complete({"edsr.scale": 2}), (1, 3, 8, 8), scale=4)


def test_detector_rows_equal_tracer_rows():
    sp = spaces.get_space("detector")
    ops = ("conv", "adder", "winograd_adder", "binary")
    for i, (head_bits, convs) in enumerate(itertools.product((32, 8), (1, 3))):
        arch = {"head.bits": head_bits, "head.convs": convs, "fpn.channels": 16, "defeat.method": "defeat"}
        for s in (1, 2, 3):
            op = ops[(i + s) % 4]
            arch.update({f"stage{s}.op": op, f"stage{s}.width": 0.25, f"stage{s}.blocks": 1 + (i + s) % 2})
            if op in ("conv", "adder"):
                arch[f"stage{s}.bits"] = (32, 8)[(i + s) % 2]
        arch = sp.complete(arch)
        for shape, db in (((1, 3, 16, 16), None), ((2, 1, 17, 23), 4)):
            model = supernets.build(sp, arch, input_shape=shape[1:], num_classes=5)
            _same(detector_workloads(arch, shape, num_classes=5, default_bits=32 if db is None else db), model, shape, db)


def test_detector_rejects_small_inputs():
    sp = spaces.get_space("detector")
    with pytest.raises(ValueError, match="at least 16"):
        sp.workloads(sp.default(), (1, 3, 8, 8))
