"""Device profiles: the six built-in YAMLs, YAML paths, registration, entry points, unknown names."""

import warnings
from types import SimpleNamespace

import pytest
import yaml

import hw_cost
from hw_cost import devices as D

BUILTIN = ["kv260", "pynq-z2", "ultra96v2", "zc706", "zcu102", "zcu104"]


def test_builtins_listed_and_complete():
    names = hw_cost.list_devices()
    assert set(BUILTIN) <= set(names)
    for n in BUILTIN:
        d = hw_cost.get_device(n)
        assert d.name == n and d.lut > 0 and d.ff > d.lut and d.dsp > 0 and d.clock_mhz > 0
        assert d.dsp_type in ("DSP48E1", "DSP48E2") and 0 < d.util_cap <= 1
        assert d.static_power_w > 0 and d.e_ddr_pj_per_byte > d.e_bram_pj_per_byte > 0
        assert set(d.unverified) <= {f for f in D._FIELDS}


def test_verified_figures():
    u = hw_cost.get_device("ultra96v2")
    assert (u.lut, u.ff, u.dsp, u.bram36) == (70560, 141120, 360, 216)  # FracBNN issue #9
    z = hw_cost.get_device("pynq-z2")
    assert (z.lut, z.ff) == (53200, 106400)


def test_unknown_device_error_names_close_match():
    with pytest.raises(ValueError, match=r"unknown device 'zcu014'.*'zcu104'") as ei:
        hw_cost.get_device("zcu014")
    assert "\n" not in str(ei.value)


def _profile_dict(name="myboard"):
    d = yaml.safe_load(open(D.DEVICE_DIR / "zcu104.yaml"))
    d["name"] = name
    d["lut"] = 1000
    return d


def test_yaml_path_device_and_estimate(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(_profile_dict("tiny")))
    dev = hw_cost.get_device(str(p))
    assert dev.name == "tiny" and dev.lut == 1000
    r = hw_cost.estimate([dict(op="conv", ops=10**6, w_bits=8, a_bits=8, params=100, in_elems=10**4, out_elems=10**4)],
                         None, device=str(p), mult_impl="lut")
    assert r.device == "tiny" and r.lut <= 0.8 * 1000 + 1e-6 or not r.feasible


def test_bad_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    d = _profile_dict("bad")
    del d["dsp"]
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match="missing.*dsp"):
        hw_cost.get_device(str(p))
    d = _profile_dict("bad2")
    d["luts"] = 3
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match="unknown keys.*luts"):
        hw_cost.get_device(str(p))


def test_register_device():
    prof = hw_cost.register_device(_profile_dict("registered-board"))
    assert "registered-board" in hw_cost.list_devices()
    assert hw_cost.get_device("registered-board") is prof
    with pytest.raises(ValueError, match="already registered"):
        hw_cost.register_device({**_profile_dict("registered-board"), "lut": 5})


def test_entry_points_load_and_broken_one_warns(monkeypatch, tmp_path):
    p = tmp_path / "ep.yaml"
    p.write_text(yaml.safe_dump(_profile_dict("ep-yaml")))

    def boom():
        raise RuntimeError("plug-in is broken")

    eps = [SimpleNamespace(name="ep-yaml", value="x:y", load=lambda: str(p)),
           SimpleNamespace(name="ep-dict", value="x:z", load=lambda: _profile_dict("ep-dict")),
           SimpleNamespace(name="ep-broken", value="x:w", load=boom)]
    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group=None: eps if group == D.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(D, "_REGISTRY", {})
    monkeypatch.setattr(D, "_LOADED", False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        names = hw_cost.list_devices()
    assert {"ep-yaml", "ep-dict"} <= set(names) and "ep-broken" not in names
    assert set(BUILTIN) <= set(names)
    assert any("ep-broken" in str(x.message) for x in w)
