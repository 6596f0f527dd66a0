"""Ray for real: a head and a second node on this machine (``ray.cluster_utils.Cluster``), the search joins with --address and its
trials run on both nodes. Runs in a subprocess, so the test session's own Ray is not disturbed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
from ray.cluster_utils import Cluster
import ray
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
second = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address)  # the driver joins the cluster, as `abacus search --address` does
from search.config import load_config
from search.engine import SearchEngine
tmp = sys.argv[1]
cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp}/m.db"], name="two-nodes", space="addernet-resnet",
    fixed={"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
           "stage3.blocks": 1, "manidp.enabled": False, "stage1.op": "conv", "stage2.op": "conv", "stage3.op": "conv"},
    budget={"trials": 6, "epochs": 2}, strategy={"name": "random"}, workers=2, address=cluster.address,
    out=f"{tmp}/runs/two-nodes", save_weights=False)
summary = SearchEngine(cfg, progress=False).run()
nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
from mlflow.tracking import MlflowClient
runs = MlflowClient(f"sqlite:///{tmp}/m.db").search_runs([summary["mlflow_experiment_id"]])
used = sorted({r.data.tags.get("node") for r in runs if r.data.tags.get("abacus.role") == "trial"})
ips = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})
print(json.dumps({"complete": summary["complete"], "nodes": sorted(nodes), "used": used, "ips": ips}))
ray.shutdown()
cluster.shutdown()
"""


def test_trials_run_on_both_nodes_of_a_cluster(tmp_path):
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=400,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["complete"] == 6
    assert len(out["nodes"]) == 2
    assert set(out["used"]) == set(out["nodes"]), "each node ran at least one trial"
    assert len(out["ips"]) == 1, "both nodes live on this machine"
