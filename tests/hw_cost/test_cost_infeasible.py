"""A design that cannot be built is reported infeasible with the reason, never with a latency."""

import math

import numpy as np

import hw_cost
from hwc_workloads import conv

BIG = [conv("conv", 512, 512, 1024)]   # dataflow line buffers alone overflow a PYNQ-Z2's BRAM


def test_infeasible_report_names_the_resource_and_has_no_latency():
    r = hw_cost.estimate(BIG, None, device="pynq-z2", style="dataflow")
    assert not r.feasible
    assert "BRAM" in r.infeasible_reason and "pynq-z2" in r.infeasible_reason and "usable 80 %" in r.infeasible_reason
    assert math.isnan(r.latency_ms) and math.isnan(r.energy_mj) and math.isnan(r.throughput_fps)
    assert r.bram > 0.8 * hw_cost.get_device("pynq-z2").bram_equiv   # the resources are still reported
    from hw_cost.render import format_report

    assert "feasible   NO: infeasible on pynq-z2" in format_report(r)


def test_batch_marks_the_same_designs():
    ok = [conv("conv", 8, 8, 8)]
    b = hw_cost.estimate_batch([BIG, ok], device="pynq-z2", style="dataflow")
    assert list(b["feasible"]) == [False, True]
    assert np.isnan(b["latency_ms"][0]) and b["latency_ms"][1] > 0
    assert hw_cost.estimate(ok, None, device="pynq-z2", style="dataflow").infeasible_reason == ""
