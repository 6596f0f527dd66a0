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


def test_a_worker_loads_its_data_once_and_each_trial_gets_a_fresh_module(monkeypatch):
    import evaluators

    from search import worker
    from search.worker import TrialSpec, _datamodule

    built = []
    real = evaluators.get_datamodule
    monkeypatch.setattr(evaluators, "get_datamodule", lambda *a, **k: built.append(k) or real(*a, **k))
    monkeypatch.setattr(worker, "_DATA_CACHE", {})
    spec = TrialSpec(1, None, {}, "digits", {}, 1, 0.1, "adam", 0.0, 32, seed=5, split_seed=3)
    dm1, split1 = _datamodule(spec)
    dm1.trainer_state = "set by trial 1"  # what a trial sets stays its own
    dm2, split2 = _datamodule(TrialSpec(2, None, {}, "digits", {}, 1, 0.1, "adam", 0.0, 32, seed=6, split_seed=3))
    assert len(built) == 1 and split1 == split2
    assert dm1 is not dm2 and not hasattr(dm2, "trainer_state")
    assert dm2.train_set is dm1.train_set  # the data set itself is read once
    other, _ = _datamodule(TrialSpec(3, None, {}, "digits", {}, 1, 0.1, "adam", 0.0, 32, seed=6, split_seed=4))
    assert len(built) == 2 and other.val_indices.tolist() != dm1.val_indices.tolist()  # another split: loaded again


def test_ray_starts_beside_the_data_check_and_mlflow_after_every_check(tmp_path, monkeypatch):
    """ray.init (here a stand-in executor) starts once the quick checks passed and runs while the
    data set is read: each waits for the other to have started, which a sequential start-up
    could not do. The MLflow store is created only after every check passed."""
    import threading

    import scale_helpers

    from search import engine as engine_mod
    from search import executors, preflight
    from search.executors import LocalExecutor

    monkeypatch.chdir(tmp_path)
    order: list[str] = []
    executor_started, data_started = threading.Event(), threading.Event()

    def fake_executor(cfg):
        order.append("executor")
        executor_started.set()
        assert data_started.wait(60), "the data check did not run while the executor started"
        return LocalExecutor()

    real_data = preflight.check_data

    def data(cfg):
        data_started.set()
        assert executor_started.wait(60), "the executor did not start while the data was checked"
        out = real_data(cfg)
        order.append("data checked")
        return out

    class Tracked(engine_mod.Tracker):
        def __init__(self, *a, **k):
            order.append("mlflow store")
            super().__init__(*a, **k)

    monkeypatch.setattr(executors, "make_executor", fake_executor)
    monkeypatch.setattr(preflight, "check_data", data)
    monkeypatch.setattr(engine_mod, "Tracker", Tracked)
    summary = engine_mod.SearchEngine(scale_helpers.config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", 3), progress=False).run()
    assert summary["complete"] == 3
    assert order.index("executor") < order.index("data checked") < order.index("mlflow store")
    assert {"checks_s", "executor_s", "setup_s", "tracking_s"} <= set(summary["startup"]) and summary["first_dispatch_s"] >= 0


def test_a_failed_check_shuts_the_started_executor_down_and_writes_nothing(tmp_path, monkeypatch):
    import pytest

    import scale_helpers

    from search import executors, preflight
    from search.engine import SearchEngine
    from search.errors import ConfigError
    from search.executors import LocalExecutor

    monkeypatch.chdir(tmp_path)
    shut = []

    class Watched(LocalExecutor):
        def shutdown(self):
            shut.append(1)

    monkeypatch.setattr(executors, "make_executor", lambda cfg: Watched())

    def bad_data(cfg):
        raise ConfigError("evaluator.data", "a readable data set", "none")

    monkeypatch.setattr(preflight, "check_data", bad_data)
    cfg = scale_helpers.config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", 3)
    with pytest.raises(ConfigError):
        SearchEngine(cfg, progress=False).run()
    assert shut == [1]
    assert not cfg.out_dir.exists() and not (tmp_path / "m.db").exists()


def test_the_mlflow_store_is_created_once_the_executor_is_up(tmp_path, monkeypatch):
    """A fresh MLflow store costs seconds of CPU (its schema migrations): it waits for the
    executor's start (``ray.init``, which the first dispatch waits for) and is still ready at the
    first result. Gates: the executor's start is held until the set-up returned, and the set-up
    gives the store a chance to start first (a store created at once would be seen before the
    executor is up)."""
    import threading

    import scale_helpers

    from search import engine as engine_mod
    from search import executors
    from search.executors import LocalExecutor

    monkeypatch.chdir(tmp_path)
    seen: list[bool] = []
    engine = None
    setup_done, store_begun = threading.Event(), threading.Event()

    class Tracked(engine_mod.Tracker):
        def __init__(self, *a, **k):
            seen.append(len(engine._starting) == 1 and engine._starting[0].done())
            store_begun.set()
            super().__init__(*a, **k)

    def held_executor(cfg):
        assert setup_done.wait(60)
        return LocalExecutor()

    real_setup = engine_mod.SearchEngine._setup

    def setup(self, *a):
        real_setup(self, *a)
        store_begun.wait(1.0)  # a store that did not wait for the executor begins here
        setup_done.set()

    monkeypatch.setattr(executors, "make_executor", held_executor)
    monkeypatch.setattr(engine_mod, "Tracker", Tracked)
    monkeypatch.setattr(engine_mod.SearchEngine, "_setup", setup)
    engine = engine_mod.SearchEngine(scale_helpers.config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", 3), progress=False)
    summary = engine.run()
    assert seen == [True] and summary["complete"] == 3


def test_the_executor_shuts_down_while_the_run_is_concluded(tmp_path, monkeypatch):
    """Ray's shutdown (~1.5 s) runs beside the end of the run (last writes, plots, summary): the
    executor's shutdown waits until the conclusion began, which a shutdown before it would never
    see; and run() returns only once the executor is down."""
    import threading

    import scale_helpers

    from search import engine as engine_mod
    from search import executors
    from search.executors import LocalExecutor

    monkeypatch.chdir(tmp_path)
    concluding = threading.Event()
    order: list[str] = []

    class Stopping(LocalExecutor):
        def shutdown(self):
            assert concluding.wait(60), "the executor was shut down before the end of the run began"
            order.append("executor down")

    real_conclude = engine_mod.SearchEngine._conclude

    def conclude(self, wall_s):
        concluding.set()
        out = real_conclude(self, wall_s)
        order.append("concluded")
        return out

    monkeypatch.setattr(executors, "make_executor", lambda cfg: Stopping())
    monkeypatch.setattr(engine_mod.SearchEngine, "_conclude", conclude)
    summary = engine_mod.SearchEngine(scale_helpers.config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", 3), progress=False).run()
    assert summary["complete"] == 3 and sorted(order) == ["concluded", "executor down"]


def test_a_search_without_address_starts_its_own_ray_beside_another_cluster(monkeypatch):
    """With no address Ray would join the last cluster started on this machine (someone else's
    search, a benchmark's cluster) and then refuse the CPU count: the engine asks for a local one."""
    import ray
    import pytest

    from search.executors import RayExecutor

    asked: list[dict] = []

    class Stop(Exception):
        pass

    def init(**kwargs):
        asked.append(kwargs)
        raise Stop

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Stop):
        RayExecutor(2)
    assert asked[0]["address"] == "local" and asked[0]["num_cpus"] == 2 and asked[0]["include_dashboard"] is False


def test_the_command_skips_the_teardown_collection_however_it_ends(monkeypatch):
    """After a search every object torch, MLflow and SQLAlchemy made is collected one by one at
    interpreter exit (~2 s): ``main`` freezes them first, on success and on an exit code alike."""
    import gc

    import pytest

    from search import cli

    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))

    def app():
        raise SystemExit(2)

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit):
        cli.main()
    assert frozen == [1]
