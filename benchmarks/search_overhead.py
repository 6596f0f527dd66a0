"""Engine overhead per trial and the speed-up of parallel workers.

1. Overhead: a search whose evaluator returns at once (``evaluator.function``) over a space whose
   network is one linear layer, costed through the space's workloads (``hw_cost.estimate`` on one
   row, as a big space with a ``workloads_fn`` is: nothing built or traced in the driver), so
   nearly all the time per trial is the engine's own: ask, the cost model, dispatch, tell, the
   journal, the MLflow child run, the front tags. Reported as
   (wall time of the loop) / trials, for the local executor and for Ray with one worker
   (Ray Tune's own per-trial overhead is about 140 ms by its documentation of trial overheads).
2. Speed-up: trials that sleep 2 s, 8 trials with 1 worker vs 2 workers on Ray (measured once
   the second Ray worker process exists; the first 2-worker run, which starts it and imports
   torch and Lightning there, is printed too).

3. Start: ``abacus search`` in a fresh process (fresh MLflow SQLite store, its own local Ray),
   from the process's start to the first trial dispatched (``process_first_dispatch_s`` in the
   summary), and the whole command's wall time (so the exit is in it).

Run from the repository root:  .venv/bin/python benchmarks/search_overhead.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # Ray workers import this module
sys.path.insert(0, str(ROOT))


def build_tiny(arch, *, input_shape=(1, 8, 8), num_classes=10, **_):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(int(input_shape[0] * input_shape[1] * input_shape[2]), num_classes))


def tiny_workloads(arch, input_shape, *, num_classes: int = 10):
    """The toy's one linear layer as a workload row (the space's fast cost path, as a big space
    describes its layers: no model is built or traced in the driver; equal to the trace)."""
    n, features = int(input_shape[0]), 1
    for d in input_shape[1:]:
        features *= int(d)
    return [{"op": "linear", "ops": n * features * num_classes, "params": features * num_classes + num_classes,
             "in_channels": features, "out_channels": num_classes, "kernel": 1, "out_pixels": n,
             "in_elems": n * features, "out_elems": n * num_classes, "name": "1"}]


def instant(model, *, datamodule, epochs, seed, reporter):
    """A trivial evaluator: a deterministic score from the seed, no training."""
    return {"val_accuracy": (seed * 7919 % 1000) / 1000.0, "epochs": epochs}


def sleep_2s(model, *, datamodule, epochs, seed, reporter):
    time.sleep(2.0)
    return {"val_accuracy": (seed * 7919 % 1000) / 1000.0, "epochs": epochs}


def tiny_space():
    from spaces import Categorical, SearchSpace

    return SearchSpace("overhead-toy", [Categorical("x", tuple(range(64))), Categorical("y", tuple(range(64)))],
                       builder="benchmarks.search_overhead:build_tiny", workloads_fn="benchmarks.search_overhead:tiny_workloads")


def run(n_trials: int, workers: int, executor: str, fn: str, tmp: Path, tag: str) -> float:
    from search.config import load_config
    from search.engine import SearchEngine
    from spaces import register_space

    register_space("overhead-toy", overwrite=True)(tiny_space)
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp / 'm.db'}"], name=f"overhead-{tag}", space="overhead-toy",
                      objectives=[{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}],
                      budget={"trials": n_trials, "epochs": 1}, strategy={"name": "random"}, workers=workers, executor=executor,
                      evaluator={"function": fn}, out=str(tmp / "runs" / tag), save_weights=False)
    engine = SearchEngine(cfg, progress=False)
    t0 = time.perf_counter()
    summary = engine.run()
    wall = time.perf_counter() - t0
    assert summary["complete"] == n_trials, summary["failures"][:3]
    return wall


def cli_start(tmp: Path) -> dict:
    """``abacus search`` in a fresh process (fresh MLflow SQLite store, its own local Ray, 2
    workers, 4 instant trials): seconds from the process's start to its first trial dispatched,
    from ``run()``'s start to it (the rest is the interpreter, the imports and the config), the
    start-up parts (overlapped), from the last trial's result to the process's exit, and the
    whole command."""
    import json
    import subprocess

    import yaml

    fixed = {f"stage{i}.{k}": v for i in (1, 2, 3) for k, v in (("width", 0.25), ("blocks", 1))}
    # the instant evaluator measures no ManiDP keep ratios: such candidates would fail (and be traced in the driver)
    fixed["manidp.enabled"] = False
    cfg = {"name": "start", "space": "addernet-resnet", "budget": {"trials": 4, "epochs": 1}, "strategy": {"name": "random"},
           "fixed": fixed, "evaluator": {"function": "benchmarks.search_overhead:instant"}, "workers": 2, "save_weights": False,
           "mlflow": {"tracking_uri": f"sqlite:///{tmp / 'start.db'}"}, "out": str(tmp / "runs" / "start")}
    (tmp / "start.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "search.cli", "search", str(tmp / "start.yaml"), "--no-progress"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    ended_at = time.time()
    if res.returncode != 0:
        last = [x for x in res.stderr.strip().splitlines() if x.strip()][-1:] or ["(no output)"]
        raise RuntimeError(f"abacus search exited {res.returncode}: {last[0][:300]}")
    wall = time.perf_counter() - t0
    summary = json.loads((tmp / "runs" / "start" / "summary.json").read_text())
    out = {"process_to_first_dispatch_s": summary["process_first_dispatch_s"], "run_to_first_dispatch_s": summary["first_dispatch_s"],
           "before_run_s": round(summary["process_first_dispatch_s"] - summary["first_dispatch_s"], 2),
           "startup": summary["startup"], "conclude_s": summary["conclude_s"],
           "exit_s": round(ended_at - summary["last_result_at"], 2) if "last_result_at" in summary else None, "whole_command_s": round(wall, 2),
           "complete": summary["complete"], "loadavg": " ".join(open("/proc/loadavg").read().split()[:3])}
    print(f"start: {out}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100, help="trials for the overhead measurement")
    ap.add_argument("--sleep-trials", type=int, default=8)
    ap.add_argument("--start-only", action="store_true", help="only the CLI start measurement")
    args = ap.parse_args()
    import ray

    if args.start_only:
        with tempfile.TemporaryDirectory() as d:
            start = cli_start(Path(d))
        print(f"abacus search: first trial dispatched {start['process_to_first_dispatch_s']:.1f} s after the process started "
              f"({start['run_to_first_dispatch_s']:.1f} s after run() began); last result to exit {start['exit_s']:.1f} s; "
              f"whole command {start['whole_command_s']:.1f} s; load average {start['loadavg']}")
        return

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chdir(tmp)
        start = cli_start(tmp)
        # warm-up: MLflow creates its tables (~4 s), imports, the cost model's first trace
        run(3, 1, "local", "benchmarks.search_overhead:instant", tmp, "warmup")
        # the fixed part (set-up, summary, artifacts) is measured with a short run and subtracted
        base_local = run(5, 1, "local", "benchmarks.search_overhead:instant", tmp, "local-5")
        full_local = run(5 + args.trials, 1, "local", "benchmarks.search_overhead:instant", tmp, "local-n")
        per_local = (full_local - base_local) / args.trials
        # address="local": a Ray of its own even while another cluster runs on the machine (Ray would join that one)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        run(3, 1, "ray", "benchmarks.search_overhead:instant", tmp, "ray-warmup")
        base_ray = run(5, 1, "ray", "benchmarks.search_overhead:instant", tmp, "ray-5")
        full_ray = run(5 + args.trials, 1, "ray", "benchmarks.search_overhead:instant", tmp, "ray-n")
        per_ray = (full_ray - base_ray) / args.trials
        one = run(args.sleep_trials, 1, "ray", "benchmarks.search_overhead:sleep_2s", tmp, "sleep-1")
        cold = run(args.sleep_trials, 2, "ray", "benchmarks.search_overhead:sleep_2s", tmp, "sleep-2-cold")
        two = run(args.sleep_trials, 2, "ray", "benchmarks.search_overhead:sleep_2s", tmp, "sleep-2")
        ray.shutdown()
    print(f"abacus search (fresh process, fresh MLflow store, own Ray): first trial dispatched {start['process_to_first_dispatch_s']:.1f} s "
          f"after the process started ({start['run_to_first_dispatch_s']:.1f} s after the engine's run() began); last result to exit "
          f"{start['exit_s']:.1f} s; whole command (4 trials, exit included) {start['whole_command_s']:.1f} s")
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"engine overhead per trial, trivial evaluator, local executor: {per_local * 1000:.1f} ms ({args.trials} trials)")
    print(f"engine overhead per trial, trivial evaluator, Ray (1 worker):  {per_ray * 1000:.1f} ms ({args.trials} trials)")
    print(f"{args.sleep_trials} trials of 2 s on Ray: 1 worker {one:.1f} s, 2 workers {two:.1f} s, speed-up {one / two:.2f}x "
          f"(first 2-worker run, which also starts the second Ray worker process: {cold:.1f} s, {one / cold:.2f}x)")


if __name__ == "__main__":
    main()
