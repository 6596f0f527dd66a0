"""A search tracked by an MLflow tracking server backed by PostgreSQL (what a cluster runs), and
by the same PostgreSQL database written directly: a throwaway cluster (initdb/pg_ctl in a temp
directory, on 127.0.0.1) and ``mlflow server`` on 127.0.0.1, both stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.engine import SearchEngine

import scale_helpers


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the ``postgres`` account Debian's package creates."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb/pg_ctl not found: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    if os.environ.get("CI"):
        import psycopg2  # noqa: F401  (a dev extra: CI must have it)
    else:
        pytest.importorskip("psycopg2")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="abacus-pg-"))  # not under pytest's root-only (0700) tree
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-A", "trust", "-U", "abacus", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    log = root / "pg.log"
    subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                                      f"-h 127.0.0.1 -p {port} -k {root} -F"] + ["start"]), check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg2://abacus@127.0.0.1:{port}/postgres"  # SQLAlchemy 2.1's bare postgresql:// means psycopg 3
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        log.close()


def _check_search(uri: str, summary: dict, n: int) -> None:
    client = MlflowClient(uri)
    runs = client.search_runs([summary["mlflow_experiment_id"]], max_results=1000,
                              filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    assert len(runs) == n
    assert {int(r.data.tags["trial_number"]) for r in runs} == set(range(n))
    tagged = {int(r.data.tags["trial_number"]) for r in runs if r.data.tags.get("pareto") == "true"}
    assert tagged == {row["trial"] for row in summary["front"]} and tagged
    for r in runs:
        assert r.info.status == "FINISHED" and set(r.data.params) == {"x", "y"}
        assert {"val_accuracy", "val_loss", "energy_mj"} <= set(r.data.metrics)
    hist = client.get_metric_history(summary["parent_run_id"], "hypervolume")
    assert [m.step for m in sorted(hist, key=lambda m: m.step)] == list(range(n))
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["front_size"] == len(summary["front"])
    assert "summary.json" in {a.path for a in client.list_artifacts(summary["parent_run_id"])}


def test_search_tracked_by_a_postgres_backed_mlflow_server(tracking_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 30
    summary = SearchEngine(scale_helpers.config(tmp_path, tracking_server, n, name="on-server"), progress=False).run()
    assert summary["complete"] == n and summary["tracking_uri"] == tracking_server
    _check_search(tracking_server, summary, n)


def test_search_written_straight_to_postgres_in_batches(postgres, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 30
    engine = SearchEngine(scale_helpers.config(tmp_path, postgres, n, name="on-postgres"), progress=False)
    summary = engine.run()
    assert engine.tracker.batch.bulk_sql
    _check_search(postgres, summary, n)
