"""Every torch-free data probe (``evaluators.data.registry.PROBES``) answers what its data module
answers once set up: the same options, shapes, builder keywords and split identity, and the same
errors. The search's data check reads the probe instead of importing Lightning, so a probe that
drifted from its module would record a split the workers then refuse."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from evaluators.data import registry
from evaluators.data.splits import split_identity

ROOT = Path(__file__).resolve().parents[2]
# per data set: option sets to compare (the engine always passes seed and batch_size)
OPTIONS = {
    "digits": [dict(seed=0, batch_size=64), dict(seed=7, batch_size=16, val_fraction=0.3),
               dict(seed=3, batch_size=32, test_fraction=0.0), dict(seed=11, batch_size=8, test_seed=5, test_fraction=0.1)],
}
BAD = {
    "digits": [dict(val_fraction=1.5), dict(test_fraction=-0.1), dict(batch_size=0), dict(num_workers=-1), dict(colour="red")],
}


def test_every_probe_has_cases_here():
    assert sorted(registry.PROBES) == sorted(OPTIONS) == sorted(BAD)
    assert set(registry.PROBES) <= set(registry.BUILTIN)


@pytest.mark.parametrize("name", sorted(registry.PROBES))
def test_a_probe_takes_its_data_modules_options(name):
    probe = inspect.signature(registry.probe_function(name)).parameters
    module = inspect.signature(registry.datamodule_class(name).__init__).parameters
    assert [(p.name, p.default) for p in probe.values()] == [(p.name, p.default) for p in module.values() if p.name != "self"]


@pytest.mark.parametrize("name", sorted(registry.PROBES))
def test_a_probe_answers_what_its_set_up_module_answers(name):
    for options in OPTIONS[name]:
        probed = registry.probe_datamodule(name, **options)
        dm = registry.get_datamodule(name, **options)
        dm.setup("fit")
        assert tuple(probed.input_shape) == tuple(dm.input_shape), options
        assert probed.num_classes == dm.num_classes, options
        assert probed.builder_kwargs == dm.builder_kwargs(), options
        assert probed.split == split_identity(dm), options
        assert probed.split["val_size"] > 0


@pytest.mark.parametrize("name", sorted(registry.PROBES))
def test_a_probe_refuses_what_its_module_refuses(name):
    for options in BAD[name]:
        with pytest.raises((ValueError, TypeError)) as from_module:
            registry.get_datamodule(name, **options).setup("fit")
        with pytest.raises(from_module.type) as from_probe:
            registry.probe_datamodule(name, **options)
        assert str(from_probe.value) == str(from_module.value), options


def test_a_data_set_registered_over_a_builtin_name_is_not_probed(monkeypatch):
    class Mine:  # a plug-in that took the name before the built-in module was imported
        pass

    monkeypatch.setitem(registry._REGISTRY, "digits", Mine)
    assert registry.probe_function("digits") is None and registry.probe_datamodule("digits", seed=0) is None
    assert registry.probe_function("cifar10") is None  # no probe: the module is built


def test_the_search_data_check_reads_digits_without_torch():
    code = ("import sys; from search.config import load_config; from search.preflight import check_data; "
            "cfg = load_config(None, name='x', space='addernet-resnet', evaluator={'data': 'digits'}); "
            "shape, classes, task, split = check_data(cfg); assert shape == (1, 8, 8) and split['val_size'] > 0; "
            "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
