"""The time budget stops asking for trials; without a terminal, progress is one line per finished trial."""

from __future__ import annotations

import io
import re

import pytest

from search.budget import TrialBudget
from search.config import load_config
from search.engine import SearchEngine
from search.errors import ConfigError
from search.progress import LogProgress, choose_mode

STUB = {
    "name": "budget",
    "space": "addernet-resnet",
    "fixed": {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
              "stage3.blocks": 1, "manidp.enabled": False},
    "strategy": {"name": "random"},
    "executor": "local",
    "save_weights": False,
    "evaluator": {"function": "probe_helpers:sleepy"},
}


def _cfg(tmp_path, budget, **extra):
    run_dir = tmp_path / ("run-" + extra.get("name", "default"))  # one run directory per search (a lock owns it)
    return load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"],
                       **{**STUB, "budget": {"epochs": 1, **budget}, "out": str(run_dir), **extra})


def test_budget_config_forms():
    assert load_config(None, **{**STUB, "budget": {}}).budget.trials == 20  # neither: the old default
    only_time = load_config(None, **{**STUB, "budget": {"time_s": 60}}).budget
    assert only_time.trials is None and only_time.time_s == 60
    both = load_config(None, **{**STUB, "budget": {"time_s": 60, "trials": 5}}).budget
    assert (both.trials, both.time_s) == (5, 60)
    with pytest.raises(ConfigError, match="budget.time_s"):
        load_config(None, **{**STUB, "budget": {"time_s": 0}})


def test_trial_budget_stops_on_whichever_comes_first():
    class B:
        trials, time_s = 3, None

    b = TrialBudget(B())
    assert b.may_ask(2) and not b.may_ask(3) and b.stopped_by == "trials (3)"

    class T:
        trials, time_s = None, 10.0

    t = TrialBudget(T(), started=0.0)  # monotonic clock: started "long ago"
    assert not t.may_ask(0) and t.stopped_by.startswith("time")
    assert TrialBudget(T()).may_ask(10**6)


def test_time_budget_with_a_huge_trial_count_stops_early_and_logs_each_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABACUS_TEST_SLEEP_S", "0.4")
    summary = SearchEngine(_cfg(tmp_path, {"time_s": 3, "trials": 10_000}), progress="log").run()
    assert 1 <= summary["trials"] < 200, summary["trials"]  # the time, not the count, ended it
    assert summary["stopped_by"].startswith("time")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if re.match(r"\[\s*\d+ s\] trial \d+ ", ln)]
    assert len(lines) == summary["trials"], "one line per finished trial"
    assert all("val_accuracy=" in ln and "front " in ln for ln in lines if " complete " in ln)


def test_time_alone_and_trials_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABACUS_TEST_SLEEP_S", "0.05")
    summary = SearchEngine(_cfg(tmp_path, {"time_s": 1.5}), progress="log").run()
    assert summary["trials"] >= 1 and summary["stopped_by"].startswith("time")
    summary = SearchEngine(_cfg(tmp_path, {"trials": 2}, name="count"), progress=False).run()
    assert summary["trials"] == 2 and summary["stopped_by"] == "trials (2)"


def test_progress_mode_follows_the_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert choose_mode(True, Tty()) == "bar"
    assert choose_mode(True, io.StringIO()) == "log"
    assert choose_mode(False, Tty()) == "none"


def test_log_line_names_number_state_objectives_and_front():
    class Rec:
        number, state, values, reason = 4, "pruned", {}, "stopped by the scheduler after epoch 1"

    out = io.StringIO()
    p = LogProgress("x", 10, 0, stream=out)
    p.trial_done(Rec(), {"complete": 3, "failed": 0, "pruned": 1, "infeasible": 0}, 2, ["val_accuracy"])
    line = out.getvalue().splitlines()[-1]
    assert "trial 4 pruned" in line and "stopped by the scheduler" in line and "front 2" in line and "1/10" in line
