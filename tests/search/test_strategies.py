"""Strategies: every registered one drives a short study; evolution and staged behave as documented."""

from __future__ import annotations

import optuna
import pytest

from search.adapter import suggest_arch
from search.config import load_config
from search.strategies import STRATEGIES, make_sampler
from spaces import Categorical, IntRange, SearchSpace, get_space

TOY = SearchSpace("toy-strategies", [Categorical("a", (0, 1, 2, 3)), Categorical("b", ("x", "y")), IntRange("c", low=0, high=3)])


def objective(arch):
    return [arch["a"] + arch["c"], (arch["b"] == "y") + 3 - arch["c"]]


def run(sampler, space, n, directions=("maximize", "minimize")):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    archs = []
    for _ in range(n):
        t = study.ask()
        arch = suggest_arch(t, space)
        archs.append(arch)
        study.tell(t, objective(arch))
    return study, archs


SMALL_FIXED = ("{recipe.adder_eta: 0.2, manidp.enabled: false, recipe.lp_schedule: false, recipe.fda_terms: 18, "
               "stage1.width: 1.0, stage2.width: 1.0, stage3.width: 1.0, stage1.bits: 32, stage2.bits: 32, stage3.bits: 32}")


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n != "staged"])
def test_every_strategy_runs_on_a_real_space(name, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(f"name: s\nspace: addernet-resnet\nstrategy: {{name: {name}}}\nbudget: {{trials: 12}}\nfixed: {SMALL_FIXED}\n")
    cfg = load_config(p)
    space = get_space("addernet-resnet")
    sampler = make_sampler(cfg, space)
    study = optuna.create_study(directions=cfg.directions, sampler=sampler)
    for i in range(12):
        t = study.ask()
        arch = suggest_arch(t, space, cfg.fixed)
        space.validate(arch)
        study.tell(t, [i % 5, float(arch["stage1.blocks"])])
    assert len(study.trials) == 12


def test_grid_covers_a_finite_space_exactly_once():
    space = SearchSpace("g", [Categorical("a", (0, 1)), IntRange("c", low=0, high=2)])
    from search.strategies import AskTellGridSampler

    sampler = AskTellGridSampler({"a": [0, 1], "c": [0, 1, 2]}, seed=0)
    study = optuna.create_study(directions=["maximize"], sampler=sampler)
    seen = set()
    for _ in range(6):
        t = study.ask()
        arch = suggest_arch(t, space)
        seen.add((arch["a"], arch["c"]))
        study.tell(t, arch["a"])
    assert len(seen) == 6


def test_regularized_evolution_mutates_exactly_one_parameter_of_a_parent():
    from search.samplers import RegularizedEvolutionSampler

    sampler = RegularizedEvolutionSampler(population_size=6, sample_size=3, seed=1)
    study, archs = run(sampler, TOY, 30)
    by_number = {t.number: t for t in study.trials}
    mutated = 0
    for t in study.trials[6:]:
        parent = by_number[t.system_attrs["evolution:parent"]]
        diff = [k for k in t.params if t.params[k] != parent.params[k]]
        assert len(diff) <= 1 and (not diff or diff[0] == t.system_attrs["evolution:mutate"])
        mutated += len(diff)
    assert mutated >= 20  # mutations change the value when the domain allows it


def test_regularized_evolution_improves_over_its_random_start():
    from search.samplers import RegularizedEvolutionSampler

    study, archs = run(RegularizedEvolutionSampler(population_size=8, sample_size=4, seed=0), TOY, 60, directions=("maximize", "maximize"))
    first = sum(v[0] + v[1] for v in (objective(a) for a in archs[:8])) / 8
    last = sum(v[0] + v[1] for v in (objective(a) for a in archs[-16:])) / 16
    assert last > first


def test_staged_searches_groups_in_order_and_fixes_earlier_groups_to_the_best():
    from search.samplers import StagedSampler

    defaults = {"a": 0, "b": "x", "c": 0}
    sampler = StagedSampler(
        [{"dims": ["a"], "trials": 6}, {"dims": ["b", "c"], "trials": 6}], defaults,
        make_inner=lambda name: optuna.samplers.RandomSampler(seed=3), primary=0,
    )
    study, archs = run(sampler, TOY, 12)
    # stage 1: only 'a' varies; b and c are at their defaults
    assert all(a["b"] == "x" and a["c"] == 0 for a in archs[:6])
    assert len({a["a"] for a in archs[:6]}) > 1
    # stage 2: 'a' fixed to the best of stage 1 on the primary objective (maximise a + c, c = 0)
    best_a = max(a["a"] for a in archs[:6])
    assert all(a["a"] == best_a for a in archs[6:])
    assert len({(a["b"], a["c"]) for a in archs[6:]}) > 1


def test_grid_refuses_a_space_too_large_to_list(tmp_path):
    from search.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("name: s\nspace: addernet-resnet\nstrategy: {name: grid}\nfixed: {recipe.adder_eta: 0.2, manidp.enabled: false}\n")
    with pytest.raises(ConfigError, match="grid of at most"):
        load_config(p)


def test_finite_strategies_refuse_unfixed_float_dimensions(tmp_path):
    from search.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("name: s\nspace: addernet-resnet\nstrategy: {name: grid}\n")
    with pytest.raises(ConfigError, match="config key 'fixed'.*recipe.adder_eta"):
        load_config(p)


def test_staged_config_errors_are_config_errors(tmp_path):
    from search.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("name: s\nspace: addernet-resnet\nstrategy: {name: staged, options: {stages: [{dims: ['stage*.op']}]}}\n")
    cfg = load_config(p)
    with pytest.raises(ConfigError, match="strategy.options.stages"):
        make_sampler(cfg, get_space("addernet-resnet"))
