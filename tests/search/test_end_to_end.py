"""A tiny real search through Ray and MLflow, and the CLI's contract for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.config import load_config
from search.engine import SearchEngine

TINY = {
    "name": "tiny",
    "space": "addernet-resnet",
    "fixed": {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25,
              "stage1.blocks": 1, "stage2.blocks": 1, "stage3.blocks": 1},
    "budget": {"trials": 4, "epochs": 1},
    "strategy": {"name": "random"},
    "workers": 2,
}


def _mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return exp, client.search_runs([exp.experiment_id], max_results=1000)


def test_tiny_search_on_ray_records_everything_in_mlflow(tmp_path, monkeypatch, ray_session):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "mlflow": {"tracking_uri": uri}}))
    cfg = load_config(cfg_path)
    summary = SearchEngine(cfg, progress=False).run()

    out = tmp_path / "runs" / "tiny"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["complete"] + summary["failed"] + summary["infeasible"] == 4
    assert summary["complete"] >= 3, summary["failures"]
    assert summary["front"], "a search with complete trials has a non-empty front"
    assert summary["hypervolume"] > 0
    assert (out / "pareto.csv").is_file() and (out / "pareto.png").stat().st_size > 1000

    exp, runs = _mlflow_runs(uri, "tiny")
    assert summary["mlflow_experiment_id"] == exp.experiment_id
    parents = [r for r in runs if r.data.tags.get("abacus.role") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert len(parents) == 1 and parents[0].info.run_id == summary["parent_run_id"]
    assert len(children) == 4
    tagged = {int(r.data.tags["trial_number"]) for r in children if r.data.tags.get("pareto") == "true"}
    assert tagged == {row["trial"] for row in summary["front"]}
    for r in children:
        assert r.data.tags["arch_id"] and r.data.params["stage1.op"] in ("conv", "adder", "winograd_adder", "binary")
        if r.data.tags["state"] == "complete":
            assert {"val_accuracy", "energy_mj", "latency_ms", "lut"} <= set(r.data.metrics)
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(summary["parent_run_id"])}
    assert {"pareto.csv", "pareto.png", "pareto.html", "summary.json", "config.yaml"} <= artifacts
    done = [r for r in children if r.data.tags["state"] == "complete"]
    for r in done:  # every trained candidate keeps its weights for `abacus export`
        names = {a.path for a in MlflowClient(uri).list_artifacts(r.info.run_id)}
        assert {"arch.json", "weights.safetensors", "weights.pt"} <= names, names
    # one child run's per-epoch validation curve
    some = next(r for r in children if r.data.tags["state"] == "complete")
    hist = MlflowClient(uri).get_metric_history(some.info.run_id, "val_accuracy")
    assert len(hist) >= 1


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_malformed_config_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace: addernet-resnet\nbudget: {trials: -1}\n")
    proc = _cli("search", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "budget.trials" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_spaces_command_lists_and_describes(tmp_path):
    proc = _cli("spaces", cwd=tmp_path)
    assert proc.returncode == 0 and "addernet-resnet" in proc.stdout
    proc = _cli("spaces", "addernet-resnet", cwd=tmp_path)
    assert proc.returncode == 0 and "stage2.op" in proc.stdout and "1912.13200" in proc.stdout
    proc = _cli("spaces", "addernet", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean" in proc.stderr


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    """A candidate whose training raises is a failed trial with its reason; the others complete."""
    import search.worker as worker

    real = worker.run_trial

    def flaky(spec):
        if spec.number % 2 == 1:
            spec.lr = float("nan")  # a NaN learning rate makes the loss NaN: a real failure path
        return real(spec)

    monkeypatch.setattr(worker, "run_trial", flaky)
    monkeypatch.setattr("search.executors.run_trial", flaky)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"], **{k: v for k, v in TINY.items()},
                      executor="local", **{"budget.trials": 4})
    summary = SearchEngine(cfg, progress=False).run()
    assert summary["complete"] == 2 and summary["failed"] == 2
    reasons = [f["reason"] for f in summary["failures"]]
    assert all(r for r in reasons), reasons
    _, runs = _mlflow_runs(f"sqlite:///{tmp_path / 'm.db'}", "tiny")
    failed = [r for r in runs if r.data.tags.get("state") == "fail"]
    assert len(failed) == 2 and all(r.info.status == "FAILED" and r.data.tags.get("fail_reason") for r in failed)


def test_a_trial_past_its_timeout_is_cancelled_and_recorded(tmp_path, monkeypatch, ray_session):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], **{**TINY, "budget": {"trials": 2, "epochs": 500, "trial_timeout_s": 4}},
                      save_weights=False)
    summary = SearchEngine(cfg, progress=False).run()
    assert summary["failed"] == 2 and summary["complete"] == 0
    assert all(f["reason"].startswith("timeout") for f in summary["failures"]), summary["failures"]
    _, runs = _mlflow_runs(uri, "tiny")
    assert sum(r.data.tags.get("state") == "fail" for r in runs) == 2


def test_retrain_block_trains_the_front_again_as_its_own_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], **{**TINY, "budget": {"trials": 3, "epochs": 1}},
                      executor="local", retrain={"epochs": 2})
    summary = SearchEngine(cfg, progress=False).run()
    front = {row["trial"] for row in summary["front"]}
    assert front and {r["trial"] for r in summary["retrained"]} == front
    _, runs = _mlflow_runs(uri, "tiny")
    retrain = [r for r in runs if r.data.tags.get("abacus.role") == "retrain"]
    assert {int(r.data.tags["retrain_of"]) for r in retrain} == front
    for r in retrain:
        assert r.data.tags["mlflow.parentRunId"] == summary["parent_run_id"]
        assert r.data.metrics["epochs"] == 2, "the retrain budget, not the search's"
    trials = [r for r in runs if r.data.tags.get("abacus.role") == "trial"]
    assert len(trials) == 3 and all(r.data.metrics.get("epochs", 1) == 1 for r in trials if r.data.tags["state"] == "complete")


def test_a_killed_worker_is_retried_and_without_retries_recorded_as_failed(tmp_path, monkeypatch, ray_session):
    import crash_helpers  # noqa: F401  (tests/search is on sys.path via pytest's rootdir insertion)

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seed = 700_001 + os.getpid() % 1000 * 10
    for s in range(seed, seed + 4):
        crash_helpers.marker(s).unlink(missing_ok=True)
    try:
        no_gates = {**TINY["fixed"], "manidp.enabled": False}  # the stub evaluator measures no dynamic ratios
        cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], **{**TINY, "fixed": no_gates, "budget": {"trials": 2, "epochs": 1, "max_retries": 1}},
                          evaluator={"function": "crash_helpers:crash_once"}, seed=seed, save_weights=False)
        summary = SearchEngine(cfg, progress=False).run()
        assert summary["complete"] == 2, summary["failures"]
        assert all(crash_helpers.marker(seed + n).exists() for n in range(2)), "each worker died once"
        cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], **{**TINY, "fixed": no_gates, "name": "tiny-noretry", "budget": {"trials": 2, "epochs": 1, "max_retries": 0}},
                          evaluator={"function": "crash_helpers:crash_once"}, seed=seed + 2, save_weights=False)
        summary = SearchEngine(cfg, progress=False).run()
        assert summary["failed"] == 2 and all(f["reason"].startswith("worker lost") for f in summary["failures"]), summary["failures"]
    finally:
        for s in range(seed, seed + 4):
            crash_helpers.marker(s).unlink(missing_ok=True)


def test_hypervolume_is_logged_after_every_completed_trial(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    for ref in ({}, {"val_accuracy": 0.0, "energy_mj": 1.0}):  # the problem's reference point, or a configured one
        cfg = load_config(None, [f"mlflow.tracking_uri={uri}"], **{**TINY, "budget": {"trials": 3, "epochs": 1}},
                          executor="local", reference_point=ref, save_weights=False, out=str(tmp_path / f"r{len(ref)}"))
        summary = SearchEngine(cfg, progress=False).run()
        history = sorted(MlflowClient(uri).get_metric_history(summary["parent_run_id"], "hypervolume"), key=lambda m: m.step)
        done = [n for n in range(3) if n not in {f["trial"] for f in summary["failures"]}]
        assert [m.step for m in history] == done, (ref, history, done)
        values = [m.value for m in history]
        assert values == sorted(values), "a hypervolume on one reference point never shrinks"
