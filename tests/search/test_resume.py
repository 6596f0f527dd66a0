"""Resume after SIGKILL: completed trials are never re-run, in-flight ones run again once, the
same MLflow parent run continues, and the summary agrees with the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from mlflow.tracking import MlflowClient

CFG = {
    "name": "resumable",
    "space": "addernet-resnet",
    "fixed": {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
              "stage3.blocks": 1, "manidp.enabled": False},
    "budget": {"trials": 6, "epochs": 3},
    "strategy": {"name": "random"},
    "executor": "local",
    "workers": 1,
}


def _journal_states(path: Path) -> dict[int, tuple[str, dict]]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.load_study(study_name="resumable", storage=storage)
    return {t.number: (t.state.name, t.user_attrs) for t in study.get_trials(deepcopy=False)}


def test_sigkill_mid_search_then_resume(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**CFG, "mlflow": {"tracking_uri": uri}}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "search", "c.yaml", "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "runs" / "resumable" / "study.journal"
    deadline = time.monotonic() + 240
    done_before: set[int] = set()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if proc.poll() is not None:
            raise AssertionError("the search finished before it could be killed; make trials longer")
        if journal.exists():
            try:
                states = _journal_states(journal)
            except Exception:
                continue
            done_before = {n for n, (st, _) in states.items() if st == "COMPLETE"}
            if len(done_before) >= 2 and any(st == "RUNNING" for st, _ in states.values()):
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(done_before) >= 2
    run = json.loads((tmp_path / "runs" / "resumable" / "run.json").read_text())

    res = subprocess.run([sys.executable, "-m", "search.cli", "resume", "runs/resumable", "--no-progress"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "resumable" / "summary.json").read_text())
    assert summary["parent_run_id"] == run["parent_run_id"], "the same MLflow parent run continues"
    counted = summary["complete"] + summary["failed"] + summary["pruned"] + summary["infeasible"]
    assert counted == 6

    states = _journal_states(journal)
    interrupted = [n for n, (_, a) in states.items() if a.get("interrupted")]
    requeued = {a["requeued_from"]: n for n, (_, a) in states.items() if "requeued_from" in a}
    assert interrupted, "the trial in flight at the kill is marked interrupted"
    assert sorted(requeued) == sorted(interrupted), "each interrupted trial is re-queued exactly once"
    for old, new in requeued.items():
        assert states[new][1]["arch"] == states[old][1]["arch"], "a re-queued trial trains the same architecture"

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("resumable")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("abacus.role") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run["parent_run_id"]]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 6, "one child run per counted trial: nothing re-run, nothing lost"
    numbers = [int(r.data.tags["trial_number"]) for r in children]
    assert len(set(numbers)) == 6 and done_before <= set(numbers)
    assert not set(interrupted) & set(numbers)
    on_front = {int(r.data.tags["trial_number"]) for r in children if r.data.tags.get("pareto") == "true"}
    assert on_front == {row["trial"] for row in summary["front"]}


def test_buffered_journal_reads_its_buffer_and_writes_only_on_flush(tmp_path):
    from search.journal import BufferedJournalFileBackend

    path = tmp_path / "j.journal"
    backend = BufferedJournalFileBackend(str(path))
    storage = optuna.storages.JournalStorage(backend)
    study = optuna.create_study(storage=storage, study_name="s")
    t = study.ask()
    t.suggest_int("x", 0, 9)
    assert [tr.number for tr in study.trials] == [0], "the storage sees its own buffered writes"
    on_disk = path.read_text().count("\n")
    study.tell(t, 1.0)
    assert path.read_text().count("\n") == on_disk, "nothing is written before flush"
    backend.flush()
    reread = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    assert [(tr.number, tr.state.name, tr.params) for tr in reread.trials] == [(0, "COMPLETE", {"x": t.params["x"]})]
