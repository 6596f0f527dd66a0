"""``abacus compare``: fronts of several searches on one reference point, logged as its own run;
``pareto.html``; the ``abacus ui`` command line and a real (bounded) start of the MLflow UI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from search.compare import COMPARE_EXPERIMENT, compare, compare_command
from search.config import load_config
from search.engine import _flatten
from search.html_report import hover_text, write_pareto_html
from search.pareto import non_dominated_mask
from search.problem import TAG_PROBLEM, TAG_REFERENCE
from search.runs import RunLookupError
from search.tracking import Tracker
from search.ui import mlflow_ui_argv, ui_command

ARCH = {"stage1.op": "adder", "stage1.width": 0.25}


REF = (0.455, 6.5)  # the reference point the fake problem fixed


def _fake_search(uri: str, name: str, points: list[tuple[float, float]], *, objectives=None, failed: int = 0,
                 finish: str = "FINISHED", problem: str = "p1") -> str:
    """A search as ``SearchEngine`` records it: the config's flattened params and the problem's
    key and reference point on a parent run, one child run per trial (complete ones carry the
    objective metrics)."""
    objectives = objectives or [{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}]
    cfg = load_config(None, name=name, space="addernet-resnet", objectives=objectives)
    tracker = Tracker(uri, cfg.experiment_name)
    ref_tags = {f"{TAG_REFERENCE}{o['name']}": repr(v) for o, v in zip(objectives, REF)}
    parent = tracker.start_parent(name, params=_flatten(cfg.model_dump(mode="json")), tags={"python": "3", TAG_PROBLEM: problem, **ref_tags})
    names = cfg.objective_names
    for i, p in enumerate(points):
        tracker.log_trial(i, {**ARCH, "stage2.blocks": i}, {"arch_id": f"id{i:03d}"},
                          {names[0]: p[0], names[1]: p[1], "lut": 100.0 + i}, [{"epoch": 0.0, names[0]: p[0]}], "complete")
    for j in range(failed):
        tracker.log_trial(len(points) + j, ARCH, {"arch_id": "bad"}, {}, [], "fail", "boom")
    tracker.finish_parent(finish)
    return parent


A = [(0.9, 4.0), (0.8, 2.0), (0.5, 3.0)]  # (0.5, 3) is dominated by (0.8, 2)
B = [(0.95, 6.0), (0.7, 1.0)]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pa = _fake_search(uri, "exp-a", A, failed=1)
    time.sleep(0.01)
    # a later, unfinished search of exp-a must be ignored (only FINISHED searches count)
    _fake_search(uri, "exp-a", [(1.0, 0.0)], finish="FAILED")
    pb = _fake_search(uri, "exp-b", B)
    return uri, pa, pb


def _hand_hv(points, ref):
    """Union of the boxes [ref_acc, acc] x [energy, ref_energy] by inclusion-exclusion (2 points)."""
    (a1, e1), (a2, e2) = points
    box = lambda a, e: max(0.0, a - ref[0]) * max(0.0, ref[1] - e)  # noqa: E731
    return box(a1, e1) + box(a2, e2) - box(min(a1, a2), max(e1, e2))


def test_compare_uses_one_reference_point_and_logs_a_run(store, tmp_path):
    uri, pa, pb = store
    result = compare(["exp-a", "exp-b"], uri, tmp_path / "cmp")

    # the point both searches recorded for their problem
    ref = result["reference_point"]
    assert result["problem"] == "p1"
    assert ref["val_accuracy"] == pytest.approx(0.5 - 0.045)
    assert ref["energy_mj"] == pytest.approx(6.0 + 0.5)
    rows = {r["experiment"]: r for r in result["experiments"]}
    r_ = (ref["val_accuracy"], ref["energy_mj"])
    hv_a, hv_b = _hand_hv([A[0], A[1]], r_), _hand_hv(B, r_)
    assert hv_a == pytest.approx(1.8025) and hv_b == pytest.approx(1.4725)
    assert rows["exp-a"]["hypervolume"] == pytest.approx(hv_a)
    assert rows["exp-b"]["hypervolume"] == pytest.approx(hv_b)
    assert rows["exp-a"]["parent_run_id"] == pa and rows["exp-b"]["parent_run_id"] == pb
    assert rows["exp-a"]["trials"] == 3 and rows["exp-a"]["front_size"] == 2  # failed trial excluded
    assert rows["exp-a"]["share_of_best"] == pytest.approx(1.0)
    assert rows["exp-b"]["share_of_best"] == pytest.approx(hv_b / hv_a)
    assert {t["trial"] for t in rows["exp-a"]["front"]} == {0, 1}

    out = tmp_path / "cmp"
    for f in ("compare.png", "compare.html", "hypervolume.csv", "fronts.csv", "compare.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    html = (out / "compare.html").read_text()
    assert "exp-a" in html and "arch id000" in html
    assert "reference point" in html and "energy_mj=6.5" in html and f"{hv_a:.6g}" in html and "<title>exp-a vs exp-b</title>" in html

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(COMPARE_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`abacus.role` = 'compare'")
    assert len(runs) == 1 and runs[0].info.run_id == result["compare_run_id"]
    run = runs[0]
    assert run.info.status == "FINISHED" and json.loads(run.data.params["searches"]) == ["exp-a", "exp-b"]
    assert run.data.params["reference.energy_mj"] == repr(6.5) and run.data.params["problem"] == "p1"
    children = {c.data.params["search"]: c for c in client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")}
    assert set(children) == {"exp-a", "exp-b"}
    assert children["exp-a"].data.metrics["hypervolume"] == pytest.approx(hv_a)
    assert children["exp-b"].data.metrics["hypervolume"] == pytest.approx(hv_b)
    assert set(children["exp-a"].data.metrics) == set(children["exp-b"].data.metrics) == {"hypervolume", "share_of_best", "front_size", "trials"}
    import csv

    with open(out / "fronts.csv") as fh:
        rows_csv = list(csv.DictReader(fh))
    assert [float(r["energy_mj"]) for r in rows_csv if r["experiment"] == "exp-a"] == sorted([4.0, 2.0])
    assert {"compare.png", "compare.html", "hypervolume.csv", "fronts.csv", "compare.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_compare_accepts_a_run_directory_and_a_fixed_reference(store, tmp_path, monkeypatch):
    uri, pa, _ = store
    rundir = tmp_path / "runs" / "exp-a"
    rundir.mkdir(parents=True)
    (rundir / "summary.json").write_text(json.dumps({"experiment": "exp-a", "parent_run_id": pa, "tracking_uri": uri}))
    result = compare([str(rundir), "exp-b"], uri, tmp_path / "c2", reference={"val_accuracy": 0.0, "energy_mj": 10.0})
    rows = {r["experiment"]: r for r in result["experiments"]}
    assert rows["exp-a"]["source"] == str(rundir)
    assert rows["exp-a"]["hypervolume"] == pytest.approx(_hand_hv([A[0], A[1]], (0.0, 10.0)))
    assert rows["exp-b"]["hypervolume"] == pytest.approx(_hand_hv(B, (0.0, 10.0)))

    # the store as the search recorded it: relative to where it ran (above runs/<name>); found from elsewhere
    (rundir / "summary.json").write_text(json.dumps({"experiment": "exp-a", "parent_run_id": pa, "tracking_uri": "sqlite:///mlflow.db"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    alone = compare([str(rundir)], None, tmp_path / "c3")
    assert alone["experiments"][0]["front_size"] == 2 and alone["tracking_uri"] == uri
    assert not (elsewhere / "mlflow.db").exists()


def test_compare_user_errors_are_one_line(store, tmp_path):
    uri, _, _ = store
    _fake_search(uri, "exp-lat", [(0.9, 3.0)], objectives=[{"name": "val_accuracy", "direction": "maximize"},
                                                             {"name": "latency_ms", "direction": "minimize"}])
    with pytest.raises(RunLookupError, match=r"objectives differ: 'exp-a' .* 'exp-lat'"):
        compare(["exp-a", "exp-lat"], uri, tmp_path / "x")
    _fake_search(uri, "exp-p2", [(0.9, 1.0)], problem="p2")
    with pytest.raises(RunLookupError, match=r"expected searches of one problem.*'exp-a': p1, 'exp-p2': p2.*--ref"):
        compare(["exp-a", "exp-p2"], uri, tmp_path / "x")
    assert compare(["exp-a", "exp-p2"], uri, tmp_path / "x2", reference={"val_accuracy": 0, "energy_mj": 9})["problem"] is None
    with pytest.raises(RunLookupError, match=r"experiment 'nope'.*exp-a"):
        compare(["exp-a", "nope"], uri, tmp_path / "x")
    with pytest.raises(RunLookupError, match=r"expected an existing SQLite file"):
        compare(["exp-a"], f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "x")
    assert not (tmp_path / "missing.db").exists()

    app = typer.Typer()
    app.command("compare")(compare_command)
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["compare", "exp-a", "exp-lat", "--tracking-uri", uri, "--out", str(tmp_path / "y")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("abacus: error: objectives differ"), res.output
    res = CliRunner().invoke(app, ["compare", "exp-a", "exp-b", "--tracking-uri", uri, "--out", str(tmp_path / "z"), "--ref", "energy_mj=7"])
    assert res.exit_code == 0, res.output
    assert "exp-a" in res.output and "100.0%" in res.output and "energy_mj=7" in res.output


def test_pareto_html_is_self_contained_with_hover_texts(tmp_path):
    rng = np.random.default_rng(0)
    dirs = ["maximize", "minimize"]
    values = rng.random((12, 2))
    mask = non_dominated_mask(values, dirs)
    texts = [hover_text(i, f"arch{i:04d}", {"stage1.op": "adder", "stage1.width": 0.25}) for i in range(12)]
    path = write_pareto_html(tmp_path / "pareto.html", values, mask, ["val_accuracy", "energy_mj"], dirs, texts, "tiny front")
    html = path.read_text()
    assert all(f"trial {i}" in html and f"arch{i:04d}" in html for i in range(12))
    assert "stage1.width=0.25" in html
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js itself is inlined
    assert '<script src="http' not in html  # no CDN: nothing to fetch at view time
    assert "Pareto front" in html and "energy_mj (minimize)" in html

    v3 = rng.random((6, 3))
    p3 = write_pareto_html(tmp_path / "p3.html", v3, non_dominated_mask(v3, dirs + ["minimize"]), ["a", "b", "c"],
                           dirs + ["minimize"], [f"t{i}" for i in range(6)], "3-D")
    assert '"scatter3d"' in p3.read_text()
    with pytest.raises(ValueError, match="one hover text per point"):
        write_pareto_html(tmp_path / "bad.html", values, mask, ["a", "b"], dirs, texts[:3], "x")


def test_ui_command_line_binds_localhost(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = mlflow_ui_argv(None, 5123)
    assert argv[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert argv[argv.index("--backend-store-uri") + 1] == "sqlite:///mlflow.db"
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "5123"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert "sqlite:///elsewhere.db" in mlflow_ui_argv(None, 5000)
    assert "sqlite:///given.db" in mlflow_ui_argv("sqlite:///given.db", 5000)
    # a store that does not exist is a user error, not an empty UI
    with pytest.raises(typer.Exit) as exc:
        ui_command(tracking_uri="sqlite:///nothing-here.db", port=5000)
    assert exc.value.exit_code == 2
    assert not (tmp_path / "nothing-here.db").exists()
    # the command replaces the process with the UI for the store named in an experiment config
    (tmp_path / "m.db").touch()
    (tmp_path / "exp.yaml").write_text(f"name: e\nspace: addernet-resnet\nmlflow: {{tracking_uri: 'sqlite:///{tmp_path / 'm.db'}'}}\n")
    seen = []
    monkeypatch.setattr("os.execve", lambda path, argv, env: seen.append((argv, env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"])))
    port = _free_port()
    ui_command(tracking_uri=None, port=port, config=tmp_path / "exp.yaml")
    assert seen == [(mlflow_ui_argv(f"sqlite:///{tmp_path / 'm.db'}", port), "false")]  # no job runners unless --jobs
    ui_command(tracking_uri=None, port=port, config=tmp_path / "exp.yaml", jobs=True)
    assert seen[-1][1] == "true"
    # a taken port: one line, exit 2, nothing started
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = typer.Typer()
        app.command("ui")(ui_command)
        app.command("other")(lambda: None)
        res = CliRunner().invoke(app, ["ui", "--config", str(tmp_path / "exp.yaml"), "--port", str(taken.getsockname()[1])])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "in use" in res.output, res.output
    assert len(seen) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_server_answers_health_on_localhost(store):
    """Starts the real server (slow: MLflow's server takes seconds to minutes to come up on a busy machine)."""
    uri, _, _ = store
    port = _free_port()
    proc = subprocess.Popen(mlflow_ui_argv(uri, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, body = time.monotonic() + 150, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body is not None and "OK" in body, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no answer in 150 s"
    finally:
        import os
        import signal

        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
