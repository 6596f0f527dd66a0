"""What a new user meets first: ``--version``, ``abacus cost`` saying which input it assumed, a
wrong data path as one line (exit 2, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _abacus(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_version_and_cost_input_shape(tmp_path):
    import importlib.metadata as md

    res = _abacus("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"abacus {md.version('abacus-nas')}"
    res = _abacus("cost", "--space", "addernet-resnet", "--arch", "default", "--json", cwd=tmp_path)
    assert res.returncode == 0 and "assumed" in res.stderr and "1,8,8" in res.stderr
    res_data = _abacus("cost", "--space", "addernet-resnet", "--arch", "default", "--data", "digits", "--json", cwd=tmp_path)
    assert res_data.returncode == 0 and "assumed" not in res_data.stderr and res_data.stdout == res.stdout
    res = _abacus("cost", "--space", "addernet-resnet", "--data", "cifar10", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "--data" in res.stderr


def test_a_wrong_data_path_is_one_line_and_writes_nothing(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"name: x\nspace: addernet-resnet\nevaluator: {{data: cifar10, data_kwargs: {{root: {tmp_path / 'nope'}}}}}\n")
    res = _abacus("search", str(cfg), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "evaluator.data_kwargs" in lines[0] and "is not a directory" in lines[0] and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
