"""Rows written as numeric arrays (``spaces.workload_rows``) cost exactly what the same rows written
as dicts cost, through the batch path (``hw_cost.blocks_to_array``) and the per-architecture path;
rows ``hw_cost`` must check one by one send the batch back to the dict path. Torch-free."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import hw_cost
import spaces
from spaces.workload_rows import ROW_DTYPE, RowBlock, Rows

ROWS = [
    {"op": "conv", "ops": 9216, "params": 80, "in_channels": 1, "out_channels": 8, "kernel": 9, "out_pixels": 128,
     "in_elems": 128, "out_elems": 1024, "name": "conv"},
    {"op": "eltwise", "ops": 1024, "params": 0, "in_elems": 1024, "out_elems": 1024, "name": "act", "fused": True},
    {"op": "linear", "ops": 640, "params": 90, "in_channels": 64, "out_channels": 10, "kernel": 1, "out_pixels": 1,
     "in_elems": 64, "out_elems": 10, "w_bits": 4, "a_bits": 8, "name": "fc"},
    {"op": "binary_conv", "ops": 4096, "params": 64, "in_channels": 8, "out_channels": 8, "kernel": 1, "out_pixels": 64,
     "in_elems": 512, "out_elems": 512, "name": "bin"},
    {"op": "adder_conv", "ops": 4096, "params": 64, "in_elems": 512, "out_elems": 512, "in_channels": 8, "out_channels": 8,
     "kernel": 1, "out_pixels": 64, "active_ratio": 0.5, "w_bits": 16, "a_bits": 16, "float": True, "name": "add"},
    {"op": "winograd_adder", "ops": 16 * 16 * 64, "params": 1024, "in_elems": 512, "out_elems": 512, "in_channels": 8,
     "out_channels": 8, "kernel": 9, "out_pixels": 64, "tiles": 16, "transform_ops": 1000, "name": "wino"},
    {"op": "identity", "ops": 0, "name": "drop"},
    {"op": "pixel_shuffle", "ops": 0, "in_elems": 512, "out_elems": 512, "name": "ps", "fused": False},
]


def _frozen(rows):
    from types import MappingProxyType

    return tuple(MappingProxyType(dict(d)) for d in rows)


def test_rowblock_gives_the_rows_back():
    rows = Rows.from_dicts(ROWS)
    block = RowBlock(rows, "blocks.3.")
    assert [dict(d) for d in block] == [{**d, "name": "blocks.3." + d["name"]} for d in ROWS]
    assert len(block) == len(ROWS) and block[2]["w_bits"] == 4 and "w_bits" not in block[0]
    joined = Rows.join([rows, Rows.join([rows, rows])])
    assert joined.parts == (rows, rows, rows) and len(joined) == 3 * len(ROWS)
    assert joined.data.tobytes() == np.concatenate([rows.data] * 3).tobytes()
    kept = RowBlock(Rows.join([Rows.from_dicts([{**ROWS[0], "weight_bytes": 3}]), rows]))  # keys hw_cost does not read
    assert dict(kept[0]) == {**ROWS[0], "weight_bytes": 3} and dict(kept[1]) == ROWS[0]
    assert not rows.data.flags.writeable


@pytest.mark.parametrize("bits", [None, 8])
def test_numeric_rows_cost_what_the_dicts_cost(bits):
    """Each architecture mixes RowBlocks (shared Rows, some joined) and blocks of read-only dicts;
    the batch path equals the per-architecture path on the same rows as dicts, bit for bit, on a
    first pass and again with every row cached."""
    rng = random.Random(0)
    leaves = [Rows.from_dicts(rng.sample(ROWS, 4)) for _ in range(5)]
    archs = []
    for _ in range(12):
        parts = rng.sample(leaves, 2)
        archs.append([RowBlock(Rows.join(parts), "a."), _frozen(rng.sample(ROWS, 3)), RowBlock(rng.choice(leaves), "b.")])
    flat = [[dict(d) for b in arch for d in b] for arch in archs]
    arr, _, unc = hw_cost.workloads_to_array(flat, default_bits=bits)
    assert not any(unc)
    for _ in range(2):
        wb = hw_cost.blocks_to_array(archs, default_bits=bits)
        assert wb is not None and wb.n_arch == len(archs)
        assert wb.to_array().tobytes() == arr.tobytes()
        for style in ("overlay", "dataflow"):
            got, ref = hw_cost.estimate_batch(wb, style=style), hw_cost.estimate_batch(arr, style=style, n_arch=len(archs))
            assert all(np.array_equal(got[k], ref[k], equal_nan=True) for k in ref), style
    numeric = hw_cost.blocks_to_array([[b for b in arch if isinstance(b, RowBlock)] for arch in archs], default_bits=bits)
    assert numeric.table.size == len(ROWS)  # rows equal in content (in any Rows, under any name) are stored once


def test_rows_the_checked_path_must_see_go_back_to_dicts():
    unknown = RowBlock(Rows.from_dicts([{**ROWS[0], "op": "fancy_op"}]))
    assert hw_cost.blocks_to_array([[unknown]]) is None
    arr, _, unc = hw_cost.workloads_to_array([list(unknown)])
    assert arr.size == 0 and unc == [["conv (op='fancy_op')"]]
    negative = RowBlock(Rows.from_dicts([{**ROWS[0], "ops": -1}]))
    assert hw_cost.blocks_to_array([[negative]]) is None
    with pytest.raises(ValueError, match="'ops' must be a finite number >= 0"):
        hw_cost.workloads_to_array([list(negative)])
    missing = RowBlock(Rows.from_dicts([{k: v for k, v in ROWS[0].items() if k != "ops"}]))
    assert hw_cost.blocks_to_array([[missing]]) is None


def test_tnt_writes_numeric_rows_and_parts_are_shared():
    sp = spaces.get_space("tnt")
    rng = random.Random(5)
    archs = [sp.sample(rng) for _ in range(30)]
    archs = [sp.complete({**a, "vtp.enabled": False}) if a.get("vtp.enabled") else a for a in archs]
    blocks = sp.workload_blocks(archs, (1, 1, 8, 8))
    assert all(isinstance(b, RowBlock) for bl in blocks for b in bl)
    wb = hw_cost.blocks_to_array(blocks)
    assert wb.table.size < wb.idx.size / 5  # distinct rows: the parts are shared across blocks and architectures
    assert all(r.data.dtype == ROW_DTYPE for bl in blocks for b in bl for r in (b.workload_rows.parts or (b.workload_rows,)))
    assert not math.isnan(hw_cost.estimate_reports(wb)[0].latency_ms)
