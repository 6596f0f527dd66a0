import json
import random

import pytest

import spaces
from spaces import Categorical, Condition, FloatRange, IntRange, InvalidArchitectureError, SearchSpace


def small_space() -> SearchSpace:
    return SearchSpace(
        name="toy",
        dimensions=[
            Categorical("a.op", ("conv", "adder", "binary"), paper="P1"),
            Categorical("a.bits", (32, 8, 4), conditions=(Condition("a.op", ("conv", "adder")),)),
            IntRange("a.blocks", low=1, high=4),
            FloatRange("lr", low=1e-3, high=1.0, log=True),
        ],
        presets={"small": {"a.blocks": 1}},
    )


def test_sample_is_deterministic_valid_and_respects_conditions():
    s = small_space()
    seen_binary = False
    for seed in range(60):
        a = s.sample(seed)
        assert a == s.sample(seed)
        s.validate(a)
        if a["a.op"] == "binary":
            seen_binary = True
            assert "a.bits" not in a
        else:
            assert a["a.bits"] in (32, 8, 4)
    assert seen_binary


def test_validate_reports_every_problem_at_once():
    s = small_space()
    with pytest.raises(InvalidArchitectureError) as info:
        s.validate({"a.op": "binary", "a.bits": 8, "a.blocks": 9, "zzz": 1})
    problems = info.value.problems
    assert len(problems) == 4, problems  # unknown, inactive, out of range, missing lr
    text = str(info.value)
    for needle in ("zzz: unknown", "a.bits: set but inactive", "a.blocks: expected an integer in [1, 4], found 9", "lr: missing"):
        assert needle in text


def test_bool_is_not_an_int_and_types_are_checked():
    s = small_space()
    a = s.default()
    a["a.blocks"] = True
    assert any("a.blocks" in p for p in s.problems(a))
    a["a.blocks"] = 2.0
    assert any("a.blocks" in p for p in s.problems(a))


def test_json_round_trip_of_space_and_arch_and_stable_id():
    s = small_space()
    s2 = SearchSpace.from_json(s.to_json())
    assert s2.to_dict() == s.to_dict()
    a = s.sample(3)
    again = json.loads(json.dumps(a))
    assert s.arch_id(again) == s.arch_id(a)
    reordered = dict(reversed(list(a.items())))
    assert spaces.arch_id(reordered) == spaces.arch_id(a)
    b = dict(a, **{"a.blocks": a["a.blocks"] % 4 + 1})
    assert s.arch_id(b) != s.arch_id(a)


def test_default_complete_and_presets():
    s = small_space()
    d = s.default()
    assert d == {"a.op": "conv", "a.bits": 32, "a.blocks": 1, "lr": pytest.approx((1e-3) ** 0.5)}
    assert s.preset("small")["a.blocks"] == 1
    with pytest.raises(KeyError):
        s.preset("nope")


@pytest.mark.parametrize("bad, message", [
    (lambda: Categorical("x", ()), "non-empty"),
    (lambda: IntRange("x", low=3, high=1), "low <= high must hold, but got low=3, high=1"),
    (lambda: FloatRange("x", low=0.0, high=1.0, log=True), "log range needs low > 0"),
    (lambda: SearchSpace("s", [Categorical("x", (1,)), Categorical("x", (2,))]), "unique"),
    (lambda: SearchSpace("s", [Categorical("y", (1,), conditions=(Condition("x", (1,)),)), Categorical("x", (1,))]), "earlier dimension"),
])
def test_space_definition_errors_state_the_invariant(bad, message):
    with pytest.raises(ValueError, match=None) as info:
        bad()
    assert message in str(info.value)


def test_registry_close_matches_and_listing():
    assert "addernet-resnet" in spaces.list_spaces()
    assert spaces.list_spaces("adder*") == ["addernet-resnet"]
    with pytest.raises(spaces.UnknownNameError) as info:
        spaces.get_space("addernet-resnt")
    assert "did you mean 'addernet-resnet'" in str(info.value)


def test_register_space_and_plugin_entry_point(monkeypatch):
    from spaces.catalog import SPACES

    toy = small_space()

    class EP:
        name = "toy-plugin"
        value = "tests:toy"

        def load(self):
            return lambda: toy

    class Broken(EP):
        name = "broken"

        def load(self):
            raise ImportError("boom")

    monkeypatch.setattr(SPACES, "_plugins_loaded", False)
    monkeypatch.setattr("spaces.registry.entry_points", lambda group: [Broken(), EP()] if group == "abacus.spaces" else [])
    with pytest.warns(UserWarning, match="broken"):
        names = spaces.list_spaces()
    assert "toy-plugin" in names
    assert spaces.get_space("toy-plugin") is toy
    SPACES._items.pop("toy-plugin")


def test_every_registered_space_samples_validates_and_round_trips():
    for name in spaces.list_spaces():
        s = spaces.get_space(name)
        for seed in range(5):
            a = s.sample(random.Random(seed))
            assert s.validate(a) == a
        assert SearchSpace.from_json(s.to_json()).labels == s.labels
        for d in s.dimensions:
            assert d.paper, f"{name}: dimension {d.label} does not name its paper"


def test_restricted_narrows_domains_and_keeps_archs_valid_in_the_original():
    s = small_space()
    r = s.restricted({"a.op": ["adder", "binary"], "a.blocks": [2, 3], "lr": [0.01, 0.1]})
    for seed in range(30):
        a = r.sample(seed)
        assert a["a.op"] in ("adder", "binary") and 2 <= a["a.blocks"] <= 3 and 0.01 <= a["lr"] <= 0.1
        s.validate(a)
    assert r.default()["a.op"] == "adder"
    with pytest.raises(ValueError, match="subset"):
        s.restricted({"a.op": ["fpga"]})
    with pytest.raises(ValueError, match=r"\[low, high\] inside \[1, 4\]"):
        s.restricted({"a.blocks": [0, 9]})
    with pytest.raises(ValueError, match="unknown dimension"):
        s.restricted({"zz": [1]})


def test_fast_validation_agrees_with_the_checked_path():
    """``validate``'s fast plan (the cost model's hot path) accepts and returns exactly what the
    checked path does, on valid, broken and oddly typed architectures of every registered space."""
    import math
    import random

    import spaces as sps
    from spaces.space import InvalidArchitectureError

    rng = random.Random(0)
    for name in sps.list_spaces():
        sp = sps.get_space(name)
        for i in range(40):
            arch = sp.sample(rng)
            label = rng.choice(list(arch))
            mutations = [None, "drop", "unknown", "bool", "nan", "inf", "float_for_int", "wrong", "inactive"]
            how = mutations[i % len(mutations)]
            if how == "drop":
                del arch[label]
            elif how == "unknown":
                arch["no.such"] = 1
            elif how == "bool":
                arch[label] = True
            elif how == "nan":
                arch[label] = math.nan
            elif how == "inf":
                arch[label] = math.inf
            elif how == "float_for_int":
                arch[label] = float(arch[label]) if isinstance(arch[label], int) and not isinstance(arch[label], bool) else 1.5
            elif how == "wrong":
                arch[label] = "zzz"
            elif how == "inactive":
                inactive = [d for d in sp.dimensions if not d.active(arch)]
                if inactive:
                    arch[inactive[0].label] = inactive[0].default_value()
            problems = sp.problems(arch)
            if problems:
                with pytest.raises(InvalidArchitectureError):
                    sp.validate(arch)
            else:
                assert sp.validate(arch) == {d.label: arch[d.label] for d in sp.dimensions if d.label in arch}
                assert list(sp.validate(arch)) == [d.label for d in sp.dimensions if d.label in arch]


def test_compiled_validation_agrees_with_the_checked_path():
    """``validate``'s fast path runs a function compiled from the space's plan: on valid and
    perturbed architectures it must give the checked path's result or defer (None), never accept
    what the checked path refuses; on sampled architectures it must not defer."""
    from spaces.space import _compiled_validation, _validation_plan

    odd = [None, True, False, 3, 2.5, "x", [1], float("nan"), float("inf"), -1]
    for name in spaces.list_spaces():
        sp = spaces.get_space(name)
        plan = _validation_plan(sp.dimensions)
        fast = _compiled_validation(plan)
        rng = random.Random(1)
        for _ in range(60):
            a = sp.sample(rng)
            cases = [a, {**a, rng.choice(list(a)): rng.choice(odd)}, {k: v for k, v in a.items() if k != rng.choice(list(a))},
                     {**a, "unknown.x": 1}]
            lab = rng.choice(sp.labels)
            cases.append({**a, lab: sp[lab].default_value()})  # possibly an inactive dimension set
            assert fast(a) is not None and list(fast(a).items()) == list(sp.validate(dict(a)).items()), (name, a)
            for c in cases:
                got, problems = fast(c), sp.problems(c)
                if problems:
                    assert got is None, (name, c, problems)
                elif got is not None:
                    assert repr(got) == repr({d.label: c[d.label] for d in sp.dimensions if d.label in c}), (name, c)
