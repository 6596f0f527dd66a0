"""Constraint parsing/checking for the search, and the CLI table."""

import pytest

import hw_cost
from hw_cost.constraints import parse_constraint
from hw_cost.render import format_report

from hwc_workloads import resnet


@pytest.fixture(scope="module")
def report():
    return hw_cost.estimate(resnet("conv"), None, device="zcu104")


@pytest.mark.parametrize("text,field,op,value,rel", [
    ("lut <= 0.8 * device", "lut", "<=", 0.8, True),
    ("dsp < 0.5*device", "dsp", "<", 0.5, True),
    ("latency_ms <= 5", "latency_ms", "<=", 5.0, False),
    ("energy_mj<=0.2", "energy_mj", "<=", 0.2, False),
    ("throughput_fps >= 1e3", "throughput_fps", ">=", 1000.0, False),
    ("bram > device*0.1", "bram", ">", 0.1, True),
])
def test_parse(text, field, op, value, rel):
    c = parse_constraint(text)
    assert (c.field, c.op, c.value, c.relative) == (field, op, value, rel)


@pytest.mark.parametrize("text,msg", [
    ("lut", "FIELD OP VALUE"), ("lut == 3", "FIELD OP VALUE"), ("lut <= lots", "must be a number"),
    ("latency_ms <= 0.5 * device", "only applies"), ("lut <= 0.5 * device * 2", "must be a number"),
])
def test_parse_errors_one_line(text, msg):
    with pytest.raises(ValueError, match=msg) as ei:
        parse_constraint(text)
    assert "\n" not in str(ei.value)


def test_check_against_device(report):
    dev = hw_cost.get_device("zcu104")
    d = report.to_dict()
    ok, msg = parse_constraint("lut <= 0.8 * device").check(d, "zcu104")
    assert ok == (d["lut"] <= 0.8 * dev.lut) and "lut" in msg
    ok, _ = parse_constraint(f"latency_ms < {d['latency_ms'] / 2}").check(d, dev)
    assert not ok
    ok, _ = parse_constraint(f"energy_mj <= {d['energy_mj'] * 1.01}").check(report, dev)  # a CostReport works too
    assert ok
    with pytest.raises(ValueError, match="not in the report"):
        parse_constraint("foo <= 1").check(d, dev)


def test_to_dict_flat_and_json(report):
    d = report.to_dict()
    for k in ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram", "feasible"):
        assert isinstance(d[k], float)
    assert d["feasible"] in (0.0, 1.0)
    import json

    j = json.loads(report.to_json())
    assert len(j["rows"]) == len(report.rows) and j["uncosted"] == []


def test_format_report(report):
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].split()[:8] == ["layer", "op", "bits", "ops", "cycles", "bound", "energy", "share"]
    assert any(l.startswith("stem") for l in lines) and "fused" in text
    assert "energy" in text and f"{report.energy_mj:.4g} mJ" in text and "feasible   yes" in text
