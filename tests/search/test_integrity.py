"""Fault injection, one test per failure seen on main (issue 10): crafted exports, torn journals,
half-written MLflow runs, a kill during retrain, two searches on one directory, set-up failures,
unplaceable resources, lost early-stopping state, systematic failures, infeasible candidates,
signals. Trials use a stub evaluator (tests/search/crash_helpers.py), so each search takes
seconds; the CLI runs in a subprocess wherever a user (or a kill) would. Tests that start three
or more searches are marked slow (run them with ``-m slow``)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
         "stage3.blocks": 1, "manidp.enabled": False}


def config(tmp: Path, **over) -> dict:
    cfg = {"name": "integ", "space": "addernet-resnet", "fixed": SMALL, "budget": {"trials": 4, "epochs": 2},
           "strategy": {"name": "random"}, "executor": "local", "workers": 1, "save_weights": False,
           "evaluator": {"function": "crash_helpers:quick"}, "mlflow": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


def write_config(tmp: Path, **over) -> Path:
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(config(tmp, **over)))
    return path


def abacus(tmp: Path, *args: str, env: dict | None = None, timeout: float = 240, faults: bool = False) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "ABACUS_TEST_MARK": str(tmp / "fault.mark"), **(env or {})}
    entry = ["-c", "from crash_helpers import main_with_faults; main_with_faults()"] if faults else ["-m", "search.cli"]
    return subprocess.run([sys.executable, *entry, *args], cwd=tmp, env=full_env, capture_output=True, text=True, timeout=timeout)


def one_line_error(res: subprocess.CompletedProcess, code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stderr[-3000:])
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return lines[0]


def store(tmp: Path):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("integ")
    return client, exp


# -- 1. a crafted export folder must never run code -------------------------------------------------

def _crafted_export(d: Path, builder: str = "subprocess:run") -> None:
    from spaces import get_space

    definition = {**get_space("addernet-resnet").to_dict(), "name": "evil-space", "builder": builder}
    d.mkdir(parents=True, exist_ok=True)
    (d / "arch.json").write_text(json.dumps({"format": "abacus-export/1", "space": "evil-space", "arch": {},
                                             "task": {"input_shape": [1, 8, 8]}, "space_definition": definition}))
    (d / "weights.pt").write_bytes(b"")


def test_crafted_export_builder_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    from supernets.export import ExportError, load_exported

    _crafted_export(tmp_path / "evil")
    called = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: called.append(a))
    with pytest.raises(ExportError, match=r"space 'evil-space' is not installed.*install the plug-in"):
        load_exported(tmp_path / "evil")
    assert called == []
    monkeypatch.undo()
    res = abacus(tmp_path, "cost", "--model", "evil")
    line = one_line_error(res)
    assert "evil-space" in line and "plug-in" in line


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ.get('BOOM_MARK', '/tmp/abacus-boom'))}",))


def test_malicious_weights_pickle_is_refused_in_one_line(tmp_path):
    from supernets.export import ExportError, load_exported, save_exported

    import supernets
    from spaces import get_space

    space = get_space("addernet-resnet")
    arch = {**space.default(), **SMALL}
    model = supernets.build(space, arch, input_shape=(1, 8, 8), num_classes=10)
    save_exported(model, arch, "addernet-resnet", {"input_shape": (1, 8, 8), "num_classes": 10}, tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").unlink()
    mark = tmp_path / "pwned"
    os.environ["BOOM_MARK"] = str(mark)
    try:
        (tmp_path / "m" / "weights.pt").write_bytes(pickle.dumps({"w": _Boom()}))
    finally:
        del os.environ["BOOM_MARK"]
    with pytest.raises(ExportError, match=r"weights\.pt: expected a state_dict readable with torch\.load\(weights_only=True\)"):
        load_exported(tmp_path / "m")
    line = one_line_error(abacus(tmp_path, "cost", "--model", "m"))
    assert "weights.pt" in line
    assert not mark.exists()


# -- 2. a torn journal line heals; any other bad line names file and line ---------------------------

@pytest.mark.slow
def test_torn_journal_line_resumes_twice_and_garbage_names_the_line(tmp_path):
    write_config(tmp_path)
    assert abacus(tmp_path, "search", "c.yaml", "--no-progress").returncode == 0
    journal = tmp_path / "runs" / "integ" / "study.journal"
    client, exp = store(tmp_path)
    parent = json.loads((tmp_path / "runs" / "integ" / "run.json").read_text())["parent_run_id"]
    for _ in range(2):  # a torn write, resumed; then again
        with open(journal, "ab") as fh:
            fh.write(b'{"op_code": 8, "worker_id": "x", "trial_id": 1, "user_attr')
        res = abacus(tmp_path, "resume", "runs/integ", "--no-progress")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "torn last line" in res.stderr
        assert journal.read_bytes().endswith(b"\n")
    assert client.get_run(parent).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(parent, "hypervolume")]
    assert steps and len(steps) == len(set(steps)), "the hypervolume curve is logged once, not once per resume"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines.insert(3, b"not json at all\n")
    journal.write_bytes(b"".join(lines))
    line = one_line_error(abacus(tmp_path, "resume", "runs/integ", "--no-progress"))
    assert "study.journal: line 4" in line
    assert client.get_run(parent).info.status == "FINISHED", "a refused resume leaves the parent run as it was"


# -- 3. a kill while a child run is half-written ------------------------------------------------------

@pytest.mark.slow
def test_half_written_child_run_is_replaced_from_the_journal_on_resume(tmp_path):
    write_config(tmp_path)
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress", env={"ABACUS_FAULT": "child:2"}, faults=True)
    assert res.returncode != 0
    assert abacus(tmp_path, "resume", "runs/integ", "--no-progress").returncode == 0
    client, exp = store(tmp_path)
    runs = client.search_runs([exp.experiment_id], "tags.`abacus.role` = 'trial'", max_results=100)
    numbers = sorted(int(r.data.tags["trial_number"]) for r in runs)
    assert numbers == sorted(set(numbers)), "one child run per trial"
    assert all(r.info.status != "RUNNING" for r in runs)
    two = next(r for r in runs if r.data.tags["trial_number"] == "2")
    assert two.data.params and "val_accuracy" in two.data.metrics and two.data.tags.get("state") == "complete"
    summary = json.loads((tmp_path / "runs" / "integ" / "summary.json").read_text())
    assert summary["complete"] == len([r for r in runs if r.data.tags.get("state") == "complete"])


# -- 4. a kill during retrain ----------------------------------------------------------------------

@pytest.mark.slow
def test_kill_during_retrain_resumes_without_training_twice(tmp_path):
    write_config(tmp_path, budget={"trials": 4, "epochs": 1}, retrain={"epochs": 1, "seed_offset": 100})
    calls = tmp_path / "calls.txt"
    first = abacus(tmp_path, "search", "c.yaml", "--no-progress", env={"ABACUS_TEST_CALLS": str(calls)})
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "integ" / "summary.json").read_text())
    front = sorted(r["trial"] for r in summary["retrained"])
    assert len(front) >= 2, "the stub's objectives should give a front of two or more"
    # again, killed in the second retrain
    (tmp_path / "runs").rename(tmp_path / "runs-first")
    (tmp_path / "mlflow.db").unlink()
    calls.unlink()
    env = {"ABACUS_TEST_CALLS": str(calls), "ABACUS_TEST_KILL_SEED": str(100 + front[1])}
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress", env=env)
    assert res.returncode == -9
    res = abacus(tmp_path, "resume", "runs/integ", "--no-progress", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    retrain_seeds = [int(x) for x in calls.read_text().split() if int(x) >= 100]
    assert retrain_seeds.count(100 + front[0]) == 1, "a member retrained before the kill is not trained again"
    client, exp = store(tmp_path)
    runs = client.search_runs([exp.experiment_id], "tags.`abacus.role` = 'retrain'", max_results=100)
    assert sorted(int(r.data.tags["retrain_of"]) for r in runs) == front, "one retrain run per front member"


# -- 5. two searches on one run directory ---------------------------------------------------------

@pytest.mark.slow
def test_second_search_or_resume_on_a_busy_directory_exits_2(tmp_path):
    write_config(tmp_path, budget={"trials": 2, "epochs": 1})
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "ABACUS_TEST_HOLD": str(gate), "ABACUS_TEST_STARTED": str(tmp_path / "started")}
    first = subprocess.Popen([sys.executable, "-m", "search.cli", "search", "c.yaml", "--no-progress"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "runs" / "integ" / ".abacus.lock"
    deadline = time.monotonic() + 240
    while not (tmp_path / "started").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    try:
        assert lock.exists()
        config_before = (tmp_path / "runs" / "integ" / "config.yaml").read_text()
        for args in (("search", "c.yaml", "--no-progress"), ("search", "c.yaml", "--overwrite", "--no-progress"),
                     ("resume", "runs/integ", "--no-progress")):
            line = one_line_error(abacus(tmp_path, *args))
            assert f"pid {first.pid}" in line and "in use" in line
        assert (tmp_path / "runs" / "integ" / "config.yaml").read_text() == config_before
    finally:
        gate.touch()
        assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    assert not lock.exists(), "the lock goes with its owner"
    line = one_line_error(abacus(tmp_path, "search", "c.yaml", "--no-progress"))
    assert "abacus resume runs/integ" in line and "--overwrite" in line
    client, exp = store(tmp_path)
    assert len(client.search_runs([exp.experiment_id], "tags.`abacus.role` = 'search'")) == 1


def test_stale_lock_of_a_dead_process_is_taken_over_on_resume(tmp_path):
    write_config(tmp_path)
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress", env={"ABACUS_TEST_KILL_SEED": "2"})
    assert res.returncode == -9
    lock = json.loads((tmp_path / "runs" / "integ" / ".abacus.lock").read_text())
    assert set(lock) >= {"pid", "host"}
    res = abacus(tmp_path, "resume", "runs/integ", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "took over the lock" in res.stderr


# -- 6. set-up failures leave nothing behind; signals leave a resumable run --------------------------

@pytest.mark.parametrize("override, key", [
    ({"strategy": {"name": "tpe", "options": {"n_startup_trials": "many"}}}, "strategy.options"),
    ({"seed": 2**40}, "seed"),
    ({"evaluator": {"function": "crash_helpers:quick", "data": "imagefolder", "data_kwargs": {"root": "/no/such/dir"}}}, "evaluator.data"),
])
def test_setup_failure_writes_nothing(tmp_path, override, key):
    write_config(tmp_path, **override)
    line = one_line_error(abacus(tmp_path, "search", "c.yaml", "--no-progress"))
    assert key in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"], "no run directory, no MLflow store"


def test_invalid_run_json_refuses_resume_and_leaves_the_parent_alone(tmp_path):
    write_config(tmp_path, budget={"trials": 2, "epochs": 1})
    assert abacus(tmp_path, "search", "c.yaml", "--no-progress").returncode == 0
    run_json = tmp_path / "runs" / "integ" / "run.json"
    run_json.write_text("{broken")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "integ").iterdir()}
    line = one_line_error(abacus(tmp_path, "resume", "runs/integ"))
    assert "run.json" in line
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "integ").iterdir()} == before


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_marks_parent_killed_and_prints_the_resume_line(tmp_path, sig):
    write_config(tmp_path, budget={"trials": 3, "epochs": 1})
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "ABACUS_TEST_HOLD": str(tmp_path / "never"), "ABACUS_TEST_STARTED": str(started)}
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "search", "c.yaml", "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_json = tmp_path / "runs" / "integ" / "run.json"
    deadline = time.monotonic() + 240
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the first trial's training started"
    proc.send_signal(sig)  # while that training runs
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "abacus resume runs/integ" in err
    client, _ = store(tmp_path)
    assert client.get_run(json.loads(run_json.read_text())["parent_run_id"]).info.status == "KILLED"
    assert not (tmp_path / "runs" / "integ" / ".abacus.lock").exists()
    res = abacus(tmp_path, "resume", "runs/integ", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "integ" / "summary.json").read_text())
    assert summary["complete"] + summary["failed"] + summary["pruned"] == 3


# -- 7. unplaceable resources error up front, within seconds ----------------------------------------

@pytest.mark.parametrize("args, override, key", [
    ((), {"resources": {"gpus_per_trial": 1}}, "resources.gpus_per_trial"),
    (("--executor", "ray"), {"resources": {"cpus_per_trial": 4096}}, "resources.cpus_per_trial"),
    (("--executor", "ray", "--address", "127.0.0.1:9"), {}, "--address"),
])
def test_unplaceable_request_errors_up_front(tmp_path, args, override, key):
    import torch

    if "gpus_per_trial" in key and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    write_config(tmp_path, **override)
    line = one_line_error(abacus(tmp_path, "search", "c.yaml", "--no-progress", *args))  # an error, not a hang
    assert key in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_ray_address_from_the_environment_is_probed_like_the_option(tmp_path):
    """``RAY_ADDRESS`` (Ray's own convention for a cluster) stands for ``--address``: a dead one is
    the same one-line error, not a silent local Ray."""
    write_config(tmp_path)
    line = one_line_error(abacus(tmp_path, "search", "c.yaml", "--no-progress", "--executor", "ray",
                                 env={"RAY_ADDRESS": "127.0.0.1:9"}))
    assert "--address" in line and "127.0.0.1:9" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# -- 8. resume restores MO-ASHA's rungs --------------------------------------------------------------

def _promotions(run_dir: Path) -> dict[int, tuple[str, str]]:
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.load_study(study_name="integ", storage=storage)
    out = {}
    for t in study.get_trials(deepcopy=False):
        o = t.user_attrs.get("outcome")
        if o:
            out[t.number] = (o["state"], o["tags"].get("pruned_at_epoch", ""))
    return out


@pytest.mark.slow
def test_mo_asha_rungs_survive_a_kill_and_resume(tmp_path):
    over = dict(budget={"trials": 8, "epochs": 4}, objectives=[{"name": "val_accuracy", "direction": "maximize"},
                                                               {"name": "val_loss", "direction": "minimize"}],
                scheduler={"name": "mo-asha", "min_epochs": 1, "reduction_factor": 2})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_config(tmp_path / "a", **over)
    write_config(tmp_path / "b", **over)
    assert abacus(tmp_path / "a", "search", "c.yaml", "--no-progress").returncode == 0
    killed = abacus(tmp_path / "b", "search", "c.yaml", "--no-progress", env={"ABACUS_FAULT": "after_finish:3"}, faults=True)
    assert killed.returncode == 9, killed.stderr[-3000:]
    assert abacus(tmp_path / "b", "resume", "runs/integ", "--no-progress").returncode == 0
    uninterrupted, resumed = _promotions(tmp_path / "a" / "runs" / "integ"), _promotions(tmp_path / "b" / "runs" / "integ")
    assert any(state == "pruned" for n, (state, _) in uninterrupted.items() if n >= 4), "the test needs a pruning after the kill point"
    assert resumed == uninterrupted


# -- 9. a broken platform stops the search -----------------------------------------------------------

def test_consecutive_failures_with_one_reason_stop_the_search(tmp_path):
    write_config(tmp_path, budget={"trials": 20, "epochs": 1, "max_failures": 3}, evaluator={"function": "crash_helpers:broken"})
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    line = res.stderr.strip().splitlines()[-1]  # after the per-trial failure notes, the one line that ends it
    assert line.startswith("abacus: search stopped: the last 3 trials failed with the same reason") and "missing_backend" in line
    summary = json.loads((tmp_path / "runs" / "integ" / "summary.json").read_text())
    assert summary["failed"] == 3


# -- 10. infeasible candidates are not charged; the sampler learns them ---------------------------

@pytest.mark.slow
def test_infeasible_candidates_are_not_charged_and_teach_the_sampler(tmp_path):
    import optuna

    fixed = {k: v for k, v in SMALL.items() if k != "stage3.width"}
    write_config(tmp_path, fixed=fixed, budget={"trials": 4, "epochs": 1}, strategy={"name": "tpe"},
                 restrict={"stage3.width": [0.25, 1.0]}, constraints=["ops <= 1e18"])
    # a bound between the cheapest and the dearest candidate: some are infeasible
    from search.config import load_config
    from search.engine import CostModel
    from spaces import get_space

    cfg = load_config(tmp_path / "c.yaml")
    space = get_space(cfg.space).restricted(cfg.restrict)
    model = CostModel(cfg, space, (1, 8, 8), 10)
    ops = sorted(model({**space.default(), **fixed, "stage3.width": w})[0]["ops"] for w in (0.25, 1.0))
    write_config(tmp_path, fixed=fixed, budget={"trials": 4, "epochs": 1}, strategy={"name": "tpe"},
                 restrict={"stage3.width": [0.25, 1.0]}, constraints=[f"ops <= {(ops[0] + ops[1]) / 2}"])
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "integ" / "summary.json").read_text())
    assert summary["complete"] + summary["failed"] + summary["pruned"] == 4, "infeasible candidates are extra, not charged"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "integ" / "study.journal")))
    trials = optuna.load_study(study_name="integ", storage=storage).get_trials(deepcopy=False)
    infeasible = [t for t in trials if t.user_attrs["outcome"]["state"] == "infeasible"]
    if infeasible:  # TPE was told them with their violation, through Optuna's constraints_func
        assert all(t.state == optuna.trial.TrialState.COMPLETE and t.system_attrs["constraints"][0] > 0 for t in infeasible)
    # constraints nothing satisfies: a clear stop, not a budget burnt on rejections
    write_config(tmp_path, budget={"trials": 4, "epochs": 1, "max_infeasible": 5}, constraints=["ops <= 1"])
    res = abacus(tmp_path, "search", "c.yaml", "--no-progress", "--overwrite")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "last 5 candidates all violated the constraints" in res.stderr.strip().splitlines()[-1]
