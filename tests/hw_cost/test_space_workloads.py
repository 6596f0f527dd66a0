"""Config-level fast path: ``addernet-resnet`` workloads written without torch equal the traced model's."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import hw_cost  # noqa: E402
import spaces  # noqa: E402
import supernets  # noqa: E402
from hw_cost.trace import trace_workloads  # noqa: E402
from spaces.addernet_resnet_workloads import addernet_resnet_workloads, winograd_transform_counts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHAPES = [(1, 1, 8, 8), (1, 3, 32, 32)]
KEYS = ("energy_mj", "latency_ms", "lut", "dsp", "bram")
N_ARCHS = 30


def _space():
    return spaces.get_space("addernet-resnet")


def _archs(n: int = N_ARCHS, seed: int = 0) -> list[dict]:
    """Random static architectures; the first ones force every op so each op path is always covered."""
    sp = _space()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a = sp.sample(rng)
        a["manidp.enabled"] = False
        if i < 4:
            op = ("conv", "adder", "winograd_adder", "binary")[i]
            for s in (1, 2, 3):
                a[f"stage{s}.op"] = op
                a[f"stage{s}.bits"] = 8 if op in ("conv", "adder") else None
        out.append(sp.complete({k: v for k, v in a.items() if v is not None}))
    return out


def _build(arch: dict, shape: tuple[int, ...], num_classes: int = 10):
    return supernets.build("addernet-resnet", arch, input_shape=shape[1:], num_classes=num_classes)


@pytest.mark.parametrize("shape", SHAPES)
def test_estimate_matches_traced_model(shape):
    sp = _space()
    for arch in _archs():
        wls = sp.workloads(arch, shape)
        assert wls is not None
        model = _build(arch, shape)
        ref = hw_cost.estimate(model, shape, device="zcu104")
        got = hw_cost.estimate(wls, None, device="zcu104")
        assert len(got.rows) == len(ref.rows)
        assert [r.name for r in got.rows] == [r.name for r in ref.rows]
        for k in KEYS:
            assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-9), (k, arch)
        assert not ref.uncosted and not got.uncosted


def test_rows_equal_tracer_rows_exactly():
    """Key-for-key equality with the tracer (odd sizes, batch 2, other class counts, default_bits)."""
    for arch in _archs(12, seed=1):
        for shape in [(2, 3, 7, 9), (1, 1, 8, 8)]:
            model = _build(arch, shape, num_classes=7)
            for db in (None, 4):
                ref, unc = trace_workloads(model, shape, default_bits=db)
                got = addernet_resnet_workloads(arch, shape, num_classes=7, default_bits=32 if db is None else db)
                assert got == ref and not unc


def test_default_bits_left_to_consumer():
    """Without default_bits the standard layers carry no bits, so the consumer's default applies
    exactly as it does when tracing (the search engine passes its hardware config's)."""
    sp = _space()
    shape = (1, 1, 8, 8)
    for arch in _archs(6, seed=2):
        wls = sp.workloads(arch, shape)
        model = _build(arch, shape)
        for db in (None, 8):
            ref = hw_cost.estimate(model, shape, device="zcu104", default_bits=db)
            got = hw_cost.estimate(wls, None, device="zcu104", default_bits=db)
            for k in KEYS:
                assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-9)


def test_batch_path_matches_single_estimates():
    sp = _space()
    shape = (1, 1, 8, 8)
    archs = _archs(20, seed=3)
    arr, _, unc = hw_cost.workloads_to_array([sp.workloads(a, shape) for a in archs])
    assert not any(unc)
    res = hw_cost.estimate_batch(arr, device="zcu104", n_arch=len(archs))
    for i, a in enumerate(archs):
        one = hw_cost.estimate(sp.workloads(a, shape), None, device="zcu104")
        assert res["energy_mj"][i] == pytest.approx(one.energy_mj, rel=1e-9)
        assert res["latency_ms"][i] == pytest.approx(one.latency_ms, rel=1e-9)


def test_num_classes_sizes_the_classifier():
    arch = _archs(1)[0]
    fc10 = addernet_resnet_workloads(arch, (1, 1, 8, 8))[-1]
    fc100 = addernet_resnet_workloads(arch, (1, 1, 8, 8), num_classes=100)[-1]
    assert fc10["out_channels"] == 10 and fc100["out_channels"] == 100
    assert fc100["ops"] == 10 * fc10["ops"]


def test_manidp_returns_none():
    sp = _space()
    arch = sp.complete({"manidp.enabled": True})
    assert sp.workloads(arch, (1, 1, 8, 8)) is None


def test_winograd_counts_match_the_op():
    from supernets.ops.winograd_adder import winograd_matrices, winograd_transform_additions

    m = winograd_matrices("balanced")
    assert winograd_transform_counts() == winograd_transform_additions(m)
    assert winograd_transform_counts(m.AT, m.BT) == winograd_transform_additions(m)
    s = winograd_matrices("standard")
    assert winograd_transform_counts(s.AT, s.BT) == winograd_transform_additions(s)


@pytest.mark.parametrize("shape", [(1, 1, 8), (1, 0, 8, 8), ("a", 1, 8, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        addernet_resnet_workloads(_archs(1)[0], shape)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        addernet_resnet_workloads(_archs(1)[0], (1, 1, 8, 8), num_classes=0)


def test_never_imports_torch():
    code = (
        "import sys\n"
        "import spaces\n"
        "sp = spaces.get_space('addernet-resnet')\n"
        "wls = [sp.workloads(sp.complete({**sp.sample(i), 'manidp.enabled': False}), (1, 3, 32, 32)) for i in range(20)]\n"
        "assert all(w for w in wls)\n"
        "import hw_cost\n"
        "hw_cost.estimate_batch(wls, device='zcu104')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_the_space_passes_num_classes_and_old_style_functions_still_work():
    import spaces
    from spaces import Categorical, SearchSpace

    space = spaces.get_space("addernet-resnet")
    arch = space.default()
    rows = space.workloads(arch, (1, 1, 8, 8), num_classes=7)
    assert rows[-1]["out_elems"] == 7
    old = SearchSpace("old-style", [Categorical("a", (1,))], workloads_fn=lambda arch, input_shape: [{"op": "eltwise"}])
    assert old.workloads({"a": 1}, (1, 1, 8, 8), num_classes=7) == [{"op": "eltwise"}]
