"""Contract over every registered space: its ``workloads_fn`` costs what tracing the built model costs.

One cost path: the search screens candidates with ``space.workloads`` (no torch) while ``abacus cost``
and exported models trace the built network; this test keeps them equal for every registered space,
the example plug-in (``examples/custom_space``) included, on sampled architectures, with and
without ``default_bits``. A space without ``workloads_fn`` is costed by tracing only (nothing to compare).
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
# an input each space's builder accepts (N, C, H, W); others get CIFAR-shaped input
SHAPES = {"addernet-resnet": (1, 1, 8, 8), "tiny-sepnet": (1, 1, 8, 8), "example:tiny-sepnet": (1, 1, 8, 8),
          "fbnet": (1, 3, 32, 32), "tnt": (1, 1, 8, 8)}
N_ARCHS = 6


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
    sp = _space(name)
    if sp.workloads_fn is None:
        pytest.skip(f"space {name!r} has no workloads_fn: it is costed by tracing only")
    shape = SHAPES.get(name, (1, 3, 32, 32))
    compared = 0
    for arch in _archs(sp, N_ARCHS, seed=7):
        wls = sp.workloads(arch, shape, num_classes=7)
        if wls is None:
            continue  # this architecture is costed by tracing (e.g. dynamic ManiDP gates)
        model = supernets.build(sp, arch, input_shape=shape[1:], num_classes=7)
        for bits in (None, 8):
            ref = hw_cost.estimate(model, shape, device="zcu104", default_bits=bits)
            got = hw_cost.estimate(sp.workloads(arch, shape, num_classes=7), None, device="zcu104", default_bits=bits)
            assert not ref.uncosted and not got.uncosted, (ref.uncosted, got.uncosted)
            assert [r.name for r in got.rows] == [r.name for r in ref.rows]
            assert [r.op for r in got.rows] == [r.op for r in ref.rows]
            for k in KEYS:
                assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-9), (name, k, bits, arch)
        compared += 1
    assert compared > 0, f"space {name!r}: no sampled architecture had workloads"


def test_the_fast_paths_exist():
    assert spaces.get_space("addernet-resnet").workloads_fn and spaces.get_space("fbnet").workloads_fn
    assert EXAMPLE.workloads_fn == "abacus_example_space.workloads:sepnet_workloads"
