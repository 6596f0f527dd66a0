"""estimate and estimate_batch give the same numbers; input checks of the workload path."""

import numpy as np
import pytest

import hw_cost

from hwc_workloads import build, random_arch


@pytest.mark.parametrize("kw", [dict(), dict(style="dataflow"), dict(pe_array=(8, 16), mult_impl="lut"),
                                dict(device="pynq-z2", mult_impl="dsp"), dict(device="kv260", style="dataflow", mult_impl="lut")])
def test_estimate_equals_estimate_batch(kw):
    rng = np.random.default_rng(11)
    wls = [build(random_arch(rng)) for _ in range(12)]
    wls[3] = wls[3] + [dict(op="mystery", ops=5, name="odd")]
    batch = hw_cost.estimate_batch(wls, **kw)
    arr, _, _ = hw_cost.workloads_to_array(wls)
    from_arr = hw_cost.estimate_batch(arr, n_arch=len(wls), chunk=5, **kw)
    for i, wl in enumerate(wls):
        r = hw_cost.estimate(wl, None, **kw)
        d = r.to_dict()
        for k in ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram", "feasible"):
            assert batch[k][i] == pytest.approx(d[k], rel=1e-9, abs=1e-12), (i, k)
            assert from_arr[k][i] == pytest.approx(d[k], rel=1e-9, abs=1e-12), (i, k)
        assert sum(row.energy_mj for row in r.rows) == pytest.approx(r.energy_mj, rel=1e-9)
        assert sum(row.share for row in r.rows) == pytest.approx(1.0, rel=1e-9)
    assert batch["n_uncosted"][3] == 1


def test_uncosted_ops_are_listed_not_zero():
    r = hw_cost.estimate([dict(op="conv", ops=1000, name="a"), dict(op="fft", ops=99, name="weird")], None)
    assert r.uncosted == ["weird (op='fft')"] and [row.name for row in r.rows] == ["a"]


@pytest.mark.parametrize("bad,msg", [
    (dict(op="conv", ops=-3), "finite number >= 0"),
    (dict(op="conv", ops="many"), "must be a number"),
    (dict(op="conv"), "missing 'ops'"),
    (dict(op="conv", ops=3, active_ratio=1.5), "active_ratio"),
])
def test_bad_workloads_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as ei:
        hw_cost.estimate([dict(op="eltwise", ops=1), bad], None)
    assert "\n" not in str(ei.value)


def test_bad_options():
    with pytest.raises(ValueError, match="style"):
        hw_cost.estimate([dict(op="conv", ops=1)], None, style="systolic")
    with pytest.raises(ValueError, match="mult_impl"):
        hw_cost.estimate([dict(op="conv", ops=1)], None, mult_impl="both")
    with pytest.raises(ValueError, match="pe_array"):
        hw_cost.estimate([dict(op="conv", ops=1)], None, pe_array=(0, 4))
    with pytest.raises(ValueError, match="unknown cost parameter"):
        hw_cost.estimate([dict(op="conv", ops=1)], None, params={"lut_scael": 1.0})


def test_params_override_changes_result():
    wl = [dict(op="conv", ops=10**6, w_bits=8, a_bits=8, in_channels=16, out_channels=16, kernel=9, out_pixels=784)]
    a = hw_cost.estimate(wl, None, pe_array=(16, 16), mult_impl="lut")
    b = hw_cost.estimate(wl, None, pe_array=(16, 16), mult_impl="lut", params={"lut_scale": 2 * hw_cost.DEFAULT_PARAMS.lut_scale})
    assert b.lut > 1.9 * (a.lut - 300)


def test_winograd_adder_cheaper_than_direct_adder():
    direct = dict(op="adder_conv", ops=784 * 16 * 16 * 9, w_bits=8, a_bits=8, params=16 * 16 * 9, in_elems=16 * 784,
                  out_elems=16 * 784, in_channels=16, out_channels=16, kernel=9, out_pixels=784)
    wino = dict(direct, op="winograd_adder", ops=196 * 16 * 16 * 16, params=16 * 16 * 16)
    d = hw_cost.estimate([direct], None, pe_array=(16, 16))
    w = hw_cost.estimate([wino], None, pe_array=(16, 16))
    assert w.rows[0].cycles < d.rows[0].cycles  # 16 ops per 2x2 tile vs 36
    assert w.energy_compute_mj < d.energy_compute_mj  # transforms included
    assert w.lut > d.lut  # transform adders cost logic


def test_estimate_reports_equal_single_estimates():
    from hwc_workloads import resnet

    nets = [resnet("conv", 8), resnet("adder_conv", 8), resnet("conv", 16, widths=(8, 16, 32))]
    reports = hw_cost.estimate_reports(nets, device="zcu104")
    for wl, rep in zip(nets, reports):
        one = hw_cost.estimate(wl, None, device="zcu104")
        for k in ("energy_mj", "latency_ms", "lut", "dsp", "bram", "power_w"):
            assert getattr(rep, k) == pytest.approx(getattr(one, k), rel=1e-9)
        assert rep.feasible == one.feasible and rep.pe_array == one.pe_array and rep.rows == []
        assert rep.utilisation == pytest.approx(one.utilisation)


def test_read_only_rows_convert_like_dicts():
    """A space may share read-only rows between architectures: the table is the one dicts give."""
    import types

    from hwc_workloads import resnet

    nets = [resnet("conv", 8), resnet("adder_conv", 8, widths=(8, 16, 32))]
    frozen = [[types.MappingProxyType(d) for d in wl] for wl in nets]
    frozen.append(frozen[0])  # the same row objects again, as a cached writer returns them
    for bits in (None, 4):
        a, na, _ = hw_cost.workloads_to_array(frozen, default_bits=bits)
        b, nb, _ = hw_cost.workloads_to_array([[dict(d) for d in wl] for wl in frozen], default_bits=bits)
        assert na == nb and a.dtype == b.dtype
        for k in a.dtype.names:
            assert np.array_equal(a[k], b[k]), k
