"""Contract over every registered space: its ``workloads_fn`` costs what tracing the built model costs.

One cost path: the search screens candidates with ``space.workloads`` (no torch) while ``abacus cost``
and exported models trace the built network; this test keeps them equal for every registered space,
the example plug-in (``examples/custom_space``) included, on sampled architectures, with and
without ``default_bits``, at two input shapes. Every registered space must have a ``workloads_fn``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import hw_cost  # noqa: E402
import spaces  # noqa: E402
import supernets  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("energy_mj", "latency_ms", "lut", "ff", "dsp", "bram", "ops", "ddr_bytes")
# inputs (N, C, H, W) each space's builder accepts: a typical one and an odd one (batch 2, other
# channels, non-square, odd sides, so stride and padding arithmetic is exercised); a space not
# listed gets the two defaults (a new built-in space whose builder needs others adds them here)
SHAPES = {"addernet-resnet": [(1, 1, 8, 8), (2, 3, 7, 9)], "tiny-sepnet": [(1, 1, 8, 8), (2, 3, 7, 9)],
          "example:tiny-sepnet": [(1, 1, 8, 8), (2, 3, 7, 9)], "fbnet": [(1, 3, 32, 32), (2, 1, 17, 23)],
          "tnt": [(1, 1, 8, 8), (2, 3, 8, 12)], "edsr-fadn": [(1, 3, 8, 8), (2, 1, 5, 7)],
          "detector": [(1, 3, 16, 16), (2, 1, 17, 23)]}
DEFAULT_SHAPES = [(1, 3, 32, 32), (2, 3, 16, 16)]
N_ARCHS = 4  # per shape (the default architecture and sampled ones)
# the costed columns of a row (everything the engine reads, except the architecture index)
ROW_FIELDS = [f for f in hw_cost.WORKLOAD_DTYPE.names if f != "arch"]


def _repo_example():
    """The example plug-in of this repository (``examples/custom_space``), imported from its source
    even when an installed copy is registered through its entry point (the installed entry point is
    tested end to end in tests/search/test_custom_space.py)."""
    spaces.list_spaces()  # load entry-point plug-ins first, so the import below is not shadowed later
    for mod in [m for m in sys.modules if m == "abacus_example_space" or m.startswith("abacus_example_space.")]:
        del sys.modules[mod]
    sys.path.insert(0, str(ROOT / "examples" / "custom_space"))
    try:
        from abacus_example_space import make_space
    finally:
        sys.path.pop(0)
    return make_space()


EXAMPLE = _repo_example()


def _space(name: str):
    return EXAMPLE if name == "example:tiny-sepnet" else spaces.get_space(name)


def _archs(sp, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = [sp.default()]
    while len(out) < n:
        out.append(sp.sample(rng))
    return out


@pytest.mark.parametrize("name", [*spaces.list_spaces(), "example:tiny-sepnet"])
def test_workloads_fn_equals_the_traced_model(name):
    """Every registered space has the fast path (no skip: a space without ``workloads_fn`` would
    make the search trace every candidate), and it equals tracing the built model row by row (each
    costed column of each row, names and ops) and in the totals, at two input shapes and two
    ``default_bits``. Architectures whose rows depend on data (ManiDP gates, FADN branch mixes:
    ``workloads`` returns None) are costed by tracing after evaluation and are not compared."""
    sp = _space(name)
    assert sp.workloads_fn is not None, (
        f"space {name!r} has no workloads_fn: the search would build and trace every candidate; write one "
        "(docs/custom-spaces.md) and add the space's input shapes to SHAPES here")
    compared = 0
    for shape in SHAPES.get(name, DEFAULT_SHAPES):
        for arch in _archs(sp, N_ARCHS, seed=7 + shape[0]):
            if sp.workloads(arch, shape, num_classes=7) is None:
                continue  # this architecture is costed by tracing (dynamic ManiDP gates, FADN)
            model = supernets.build(sp, arch, input_shape=shape[1:], num_classes=7)
            for bits in (None, 8):
                traced, unc = hw_cost.trace_workloads(model, shape, default_bits=bits)
                wls = sp.workloads(arch, shape, num_classes=7)
                assert not unc, unc
                ref_arr, ref_names, ref_unc = hw_cost.workloads_to_array([traced], default_bits=bits)
                got_arr, got_names, got_unc = hw_cost.workloads_to_array([wls], default_bits=bits)
                assert not ref_unc[0] and not got_unc[0], (ref_unc, got_unc)
                assert got_names == ref_names, (name, shape, arch)
                for f in ROW_FIELDS:
                    assert got_arr[f].tolist() == ref_arr[f].tolist(), (name, f, shape, bits, arch)
                ref = hw_cost.estimate(traced, None, device="zcu104", default_bits=bits)
                got = hw_cost.estimate(wls, None, device="zcu104", default_bits=bits)
                for k in KEYS:
                    assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-12), (name, k, bits, arch)
            compared += 1
    assert compared > 0, f"space {name!r}: no sampled architecture had workloads"


@pytest.mark.parametrize("name", spaces.list_spaces())
def test_workload_blocks_flatten_to_workloads(name):
    """The batch path's blocks (``SearchSpace.workload_blocks``) are the same rows as ``workloads``."""
    sp = _space(name)
    shape = SHAPES.get(name, DEFAULT_SHAPES)[0]
    archs = _archs(sp, N_ARCHS, seed=3)
    blocks = sp.workload_blocks(archs, shape, num_classes=7)
    for arch, bl in zip(archs, blocks):
        flat = sp.workloads(arch, shape, num_classes=7)
        assert (bl is None) == (flat is None)
        if bl is not None:
            assert [dict(r) for b in bl for r in b] == [dict(r) for r in flat]


def test_the_fast_paths_exist():
    for name in ("addernet-resnet", "fbnet", "tnt", "edsr-fadn", "detector"):
        assert spaces.get_space(name).workloads_fn, name
    assert EXAMPLE.workloads_fn == "abacus_example_space.workloads:sepnet_workloads"
