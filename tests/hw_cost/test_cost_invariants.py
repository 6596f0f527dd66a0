"""Invariants over random ResNet-like architectures (what a built-in space samples)."""

import copy

import numpy as np
import pytest

import hw_cost

from hwc_workloads import build, random_arch

N = 40


def _cfgs(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return [random_arch(rng) for _ in range(n)]


STYLES = [dict(style="overlay"), dict(style="overlay", pe_array=(16, 16)), dict(style="dataflow")]


def _batch(cfgs, **kw):
    return hw_cost.estimate_batch([build(c) for c in cfgs], **kw)


@pytest.mark.parametrize("kw", STYLES)
def test_energy_at_least_static_times_latency(kw):
    r = _batch(_cfgs(1), **kw)
    dev = hw_cost.get_device("zcu104")
    assert np.all(r["energy_mj"] >= dev.static_power_w * r["latency_ms"] * (1 - 1e-12))
    assert np.all(r["energy_mj"] > 0) and np.all(r["latency_ms"] > 0)


@pytest.mark.parametrize("kw", STYLES[:2])
def test_monotone_in_bits(kw):
    cfgs = [c for c in _cfgs(2) if c["op"] != "binary_conv"]
    lo = _batch([{**c, "bits": 4} for c in cfgs], **kw)
    for b in (6, 8, 16):
        hi = _batch([{**c, "bits": b} for c in cfgs], **kw)
        assert np.all(hi["energy_mj"] >= lo["energy_mj"] * (1 - 1e-9))
        assert np.all(hi["latency_ms"] >= lo["latency_ms"] * (1 - 1e-9))
        lo = hi


def _wider(c, f):
    return {**c, "widths": tuple(int(w * f) for w in c["widths"])}


@pytest.mark.parametrize("kw", STYLES[:2])
def test_monotone_in_channels_and_pruning_never_slower(kw):
    cfgs = _cfgs(3)
    base = _batch(cfgs, **kw)
    wide = _batch([_wider(c, 1.5) for c in cfgs], **kw)
    assert np.all(wide["energy_mj"] >= base["energy_mj"] * (1 - 1e-9))
    assert np.all(wide["latency_ms"] >= base["latency_ms"] * (1 - 1e-9))
    # structured pruning: drop output channels of random convs (and the next layer's inputs)
    rng = np.random.default_rng(4)
    for c in cfgs:
        wl = build(c)
        pruned = copy.deepcopy(wl)
        for i, d in enumerate(pruned):
            if d["op"] in ("conv", "adder_conv", "binary_conv") and d["name"].endswith("conv1") and rng.random() < 0.7:
                keep = max(1, int(d["out_channels"] * rng.uniform(0.3, 0.95)))
                f = keep / d["out_channels"]
                d.update(out_channels=keep, ops=d["ops"] * f, params=d["params"] * f, out_elems=d["out_elems"] * f)
                nxt = pruned[i + 2]  # conv2 (after the fused norm)
                pruned[i + 1].update(ops=pruned[i + 1]["ops"] * f, in_elems=pruned[i + 1]["in_elems"] * f, out_elems=pruned[i + 1]["out_elems"] * f)
                nxt.update(in_channels=keep, ops=nxt["ops"] * f, params=nxt["params"] * f, in_elems=nxt["in_elems"] * f)
        a = hw_cost.estimate(wl, None, **kw)
        b = hw_cost.estimate(pruned, None, **kw)
        assert b.latency_ms <= a.latency_ms * (1 + 1e-12)
        assert b.energy_mj <= a.energy_mj * (1 + 1e-12)


@pytest.mark.parametrize("kw", STYLES[:2])
def test_adder_cheaper_than_multiplication_at_equal_bits(kw):
    cfgs = [c for c in _cfgs(5) if c["op"] != "binary_conv"]
    mul = _batch([{**c, "op": "conv"} for c in cfgs], mult_impl="lut", **kw)
    add = _batch([{**c, "op": "adder_conv"} for c in cfgs], mult_impl="lut", **kw)
    assert np.all(add["energy_mj"] < mul["energy_mj"])
    if "pe_array" in kw:  # same circuit: fewer LUTs
        assert np.all(add["lut"] < mul["lut"])
    else:  # sized to fit: at least as many lanes for the same LUT budget
        assert np.all(add["lanes"] >= mul["lanes"])


@pytest.mark.parametrize("kw", STYLES)
def test_binary_cheaper_than_int8(kw):
    cfgs = _cfgs(6)
    b = _batch([{**c, "op": "binary_conv"} for c in cfgs], **kw)
    q = _batch([{**c, "op": "conv", "bits": 8} for c in cfgs], **kw)
    assert np.all(b["energy_mj"] < q["energy_mj"])
    assert np.all(b["latency_ms"] <= q["latency_ms"] * (1 + 1e-12))


def test_dynamic_active_ratio_scales_work():
    wl = build(dict(op="conv", bits=8, widths=(16, 32, 64), blocks=(2, 2, 2)))
    half = [dict(d, active_ratio=0.5) if d["op"] == "conv" else d for d in wl]
    a, b = hw_cost.estimate(wl, None, pe_array=(16, 16)), hw_cost.estimate(half, None, pe_array=(16, 16))
    assert b.ops == pytest.approx(a.ops - 0.5 * sum(d["ops"] for d in wl if d["op"] == "conv"))
    assert b.energy_mj < a.energy_mj and b.latency_ms < a.latency_ms


def test_small_device_folds_or_is_infeasible():
    wl = build(dict(op="conv", bits=16, widths=(32, 64, 128), blocks=(2, 2, 2)))
    r = hw_cost.estimate(wl, None, device="pynq-z2", pe_array=(64, 64), mult_impl="dsp")
    assert r.folded and r.pe_array[0] * r.pe_array[1] < 64 * 64
    assert r.feasible and r.dsp <= hw_cost.get_device("pynq-z2").dsp
