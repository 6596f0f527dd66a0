"""The batch path (``SearchSpace.workload_blocks`` -> ``hw_cost.blocks_to_array`` -> ``estimate_batch``
on a ``WorkloadBatch``) gives, bit for bit, what the per-architecture path gives, for every
registered space with a ``workloads_fn``: same rows, same table, same numbers as ``estimate_batch``
on row lists and as ``estimate`` on each architecture. Torch-free."""

from __future__ import annotations

import random
from types import MappingProxyType

import numpy as np
import pytest

import hw_cost
import spaces

SHAPES = {"addernet-resnet": (1, 1, 8, 8), "fbnet": (1, 3, 32, 32), "tnt": (1, 1, 8, 8), "edsr-fadn": (1, 3, 8, 8),
          "detector": (1, 3, 16, 16)}
DYNAMIC = ("manidp.enabled", "fadn.enabled")  # data-dependent networks have no rows (tested below)
FAST = [n for n in spaces.list_spaces() if spaces.get_space(n).workloads_fn is not None]


def _archs(sp, n: int) -> list[dict]:
    rng = random.Random(3)
    out = [sp.default()]
    while len(out) < n:
        a = sp.sample(rng)
        a = sp.complete({**a, **{k: False for k in DYNAMIC if k in a}})
        out.append(a)
    return out


def test_every_built_in_fast_space_is_covered():
    assert set(spaces.list_spaces()) == set(FAST)  # every registered space has the fast path


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("bits", [None, 8])
def test_batch_path_equals_per_arch_path(name, bits):
    sp = spaces.get_space(name)
    shape = SHAPES.get(name, (1, 3, 32, 32))
    archs = _archs(sp, 24)
    blocks = sp.workload_blocks(archs, shape)
    rows = [sp.workloads(a, shape) for a in archs]
    assert [[r for b in bl for r in b] for bl in blocks] == rows      # flattening the blocks gives the rows
    wb = hw_cost.blocks_to_array(blocks, default_bits=bits)
    arr, _, unc = hw_cost.workloads_to_array(rows, default_bits=bits)
    assert not any(unc)
    if wb is None:  # a plug-in whose rows are not cached read-only blocks: the row-list path serves it
        assert not hasattr(spaces.space._resolved(sp.workloads_fn)[0], "blocks"), name
        wb = hw_cost.WorkloadBatch(arr, np.arange(arr.size), arr["arch"].copy(), len(archs))
    assert wb.n_arch == len(archs)
    assert wb.to_array().tobytes() == arr.tobytes()
    for style in ("overlay", "dataflow"):
        fast = hw_cost.estimate_batch(wb, style=style)
        ref = hw_cost.estimate_batch(arr, style=style, n_arch=len(archs))
        for k in ref:
            assert np.array_equal(fast[k], ref[k], equal_nan=True), (style, k)
        for i in (0, len(archs) // 2, len(archs) - 1):
            one = hw_cost.estimate(rows[i], None, style=style, default_bits=bits)
            for k in ("energy_mj", "latency_ms", "lut", "ff", "dsp", "bram", "ops", "ddr_bytes", "lanes"):
                assert np.array_equal(np.float64(getattr(one, k)), fast[k][i], equal_nan=True), (style, k, i)
    reps = hw_cost.estimate_reports(wb)
    assert [repr(r.to_dict()) for r in reps] == [repr(r.to_dict()) for r in hw_cost.estimate_reports(arr, n_arch=len(archs))]


def test_chunks_and_shared_blocks():
    sp = spaces.get_space("fbnet")
    archs = _archs(sp, 9)
    wb = hw_cost.blocks_to_array(sp.workload_blocks(archs, (1, 3, 32, 32)))
    whole = hw_cost.estimate_batch(wb)
    chunked = hw_cost.estimate_batch(wb, chunk=2)
    assert all(np.array_equal(whole[k], chunked[k], equal_nan=True) for k in whole)
    assert np.unique(wb.idx).size < wb.idx.size  # blocks shared between architectures are stored once


def test_blocks_it_cannot_take_fall_back():
    sp = spaces.get_space("addernet-resnet")
    dyn = sp.complete({"manidp.enabled": True})
    assert sp.workload_blocks([dyn], (1, 1, 8, 8)) == [None]
    assert hw_cost.blocks_to_array([None]) is None                       # costed by tracing instead
    row = {"op": "conv", "ops": 10, "in_channels": 1, "out_channels": 1, "kernel": 1, "out_pixels": 10}
    assert hw_cost.blocks_to_array([[(row,)]]) is None                   # not read-only: per-row path
    assert hw_cost.blocks_to_array([[[MappingProxyType(row)]]]) is None  # not a cached tuple
    unknown = MappingProxyType({"op": "mystery", "ops": 1})
    assert hw_cost.blocks_to_array([[(unknown,)]]) is None               # uncosted rows need the reported path
    ok = hw_cost.blocks_to_array([[(MappingProxyType(row),)], []])
    assert ok.n_arch == 2 and ok.arch.tolist() == [0]
    res = hw_cost.estimate_batch(ok)
    assert res["ops"].tolist() == [10.0, 0.0]


@pytest.mark.parametrize("name", ["fbnet", "addernet-resnet"])
def test_a_small_row_table_shared_by_many_architectures(name, monkeypatch):
    """A hand-built ``WorkloadBatch`` whose few distinct rows are shared by many architectures (the
    engine then computes row x array-shape terms once per distinct row, and redoes the rows of
    minor arrays: a float stem beside adder / binary layers) equals its flat table."""
    from hw_cost import engine

    sp = spaces.get_space(name)
    shape = SHAPES[name]
    archs = _archs(sp, 3)
    if name == "addernet-resnet":  # adder and binary stages beside the float stem and classifier
        archs = [sp.complete({**a, "stage1.op": op, "stage2.op": op, "stage3.op": op}) for a, op in zip(archs, ("adder", "binary", "conv"))]
    wls = [sp.workloads(a, shape) for a in archs]
    arr, _, _ = hw_cost.workloads_to_array(wls)
    rng = np.random.default_rng(0)
    counts = rng.integers(30, 90, size=400)  # ~24,000 rows over few distinct: the shared-terms branch
    idx = rng.integers(0, arr.size, size=int(counts.sum()))
    arch = np.repeat(np.arange(counts.size), counts)
    wb = hw_cost.WorkloadBatch(arr, idx, arch, counts.size)
    shapes = []
    orig = engine._ov_comp
    monkeypatch.setattr(engine, "_ov_comp", lambda R, *a: shapes.append(np.shape(R["cout"])) or orig(R, *a))
    for style in ("overlay", "dataflow"):
        fast, ref = hw_cost.estimate_batch(wb, style=style), hw_cost.estimate_batch(wb.to_array(), style=style, n_arch=counts.size)
        assert all(np.array_equal(fast[k], ref[k], equal_nan=True) for k in ref), style
    assert shapes[0] == (arr.size, 1)                                 # per distinct row and candidate
    if name == "addernet-resnet":
        assert 0 < shapes[1][0] < idx.size                            # the minor arrays' rows, redone
