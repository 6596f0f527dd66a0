"""The plug-in path users come for: install a space package, see it, search it, cost its new op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_space"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed_plugin():
    res = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(EXAMPLE))
    assert res.returncode == 0, res.stderr
    yield
    _pip("uninstall", "-y", "-q", "abacus-example-space")


def _abacus(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=400)


def test_installed_space_is_listed_and_described(installed_plugin, tmp_path):
    out = _abacus("spaces", cwd=tmp_path)
    assert out.returncode == 0 and "tiny-sepnet" in out.stdout
    out = _abacus("spaces", "tiny-sepnet", cwd=tmp_path)
    assert out.returncode == 0 and "block2.kernel" in out.stdout and "1704.04861" in out.stdout


def test_two_trial_search_on_the_plugin_space_costs_its_new_op(installed_plugin, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = _abacus("search", str(EXAMPLE / "example.yaml"), "--trials", "2", "--set", "budget.epochs=1",
                  "--set", f"mlflow.tracking_uri={uri}", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "tiny-sepnet-demo" / "summary.json").read_text())
    assert summary["complete"] == 2 and summary["front"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([summary["mlflow_experiment_id"]])
    children = [r for r in runs if r.data.tags.get("abacus.role") == "trial"]
    assert len(children) == 2
    for r in children:
        assert "uncosted_modules" not in r.data.metrics, "SepConv2d is costed through hw_workload"
        assert r.data.metrics["latency_ms"] > 0 and r.data.metrics["energy_mj"] > 0


def test_plugin_op_is_costed_as_depthwise_plus_pointwise(installed_plugin):
    code = (
        "import hw_cost, supernets, spaces; s = spaces.get_space('tiny-sepnet'); "
        "m = supernets.build('tiny-sepnet', s.default()); r = hw_cost.estimate(m, (1, 1, 8, 8)); "
        "print(sorted({row.op if hasattr(row, 'op') else row['op'] for row in r.rows})); print(r.uncosted)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    ops_line, uncosted_line = res.stdout.strip().splitlines()[-2:]
    assert "dwconv" in ops_line and "conv" in ops_line
    assert uncosted_line == "[]"
