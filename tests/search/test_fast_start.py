"""A config is checked without importing Lightning or torch (they cost seconds), and the lazy
``evaluators`` package still lists and builds every built-in data set."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checking_a_config_imports_neither_lightning_nor_torch():
    code = ("import sys; from search.config import load_config; "
            "load_config(None, name='x', space='addernet-resnet', evaluator={'data': 'digits'}); "
            "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'torch', 'ray', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_builtin_data_sets_are_listed_as_their_modules_register_them():
    from evaluators.data import registry

    for module in set(registry.BUILTIN.values()):
        importlib.import_module(module)
    assert sorted(registry._REGISTRY) == sorted(registry.BUILTIN)
    assert registry.list_datasets() == sorted(registry.BUILTIN)
    for name, cls in registry._REGISTRY.items():  # the task answered without importing is the class's
        assert registry.BUILTIN_TASKS.get(name, "classification") == getattr(cls, "task", "classification"), name


def test_the_evaluate_function_survives_its_submodule_import():
    import evaluators
    import evaluators.evaluate  # noqa: F401  (Python sets the package attribute to the submodule)

    assert callable(evaluators.evaluate) and evaluators.evaluate.__module__ == "evaluators.evaluate"


def test_worker_warm_up_imports_what_a_trial_needs():
    from search.worker import warm_up

    assert warm_up("digits") >= 0
    assert {"torch", "pytorch_lightning", "evaluators.data.digits", "supernets"} <= set(sys.modules)
