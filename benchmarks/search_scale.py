"""The engine at scale: 10,000 instant trials on a local 3-node Ray cluster, beside plain Optuna.

What it records, for the engine (``SearchEngine``, Ray executor on ``ray.cluster_utils.Cluster``
with 3 nodes, MLflow on SQLite, random sampler, three objectives from an evaluator that returns
at once) and for plain Optuna (the same random sampler, journal file storage, the same scores,
ask/tell in a loop) in the same process, one after the other:

- per-trial overhead: the mean gap between consecutive trial completions over trials 1-100 and
  over the last 100 (flat is the goal; the engine's evaluator returns at once, so the gap is the
  engine's own work: ask, cost model, dispatch to a Ray worker on another node, tell, journal,
  the front, the MLflow child run queued);
- driver RSS after 1,000 trials and at the end;
- the end-of-run wait for queued MLflow writes (``tracking_wait_s``), and the effective cost per
  trial including it: (wall time of the loop + final wait) / trials;
- the engine's start: process start to the first trial dispatched (``first_dispatch_s``).

Run from the repository root:  .venv/bin/python benchmarks/search_scale.py --trials 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # Ray workers import this module
sys.path.insert(0, str(ROOT))

from benchmarks.search_overhead import tiny_space  # noqa: E402


OBJECTIVES = [{"name": "val_accuracy", "direction": "maximize"}, {"name": "val_loss", "direction": "minimize"},
              {"name": "macs", "direction": "minimize"}]


def scores(seed: int) -> tuple[float, float, float]:
    """Three independent pseudo-random scores: a 3-objective front of a few dozen points at
    10,000 trials (about (ln n)^2 / 2), so the front bookkeeping has real work."""
    return (seed * 7919 % 1000) / 1000.0, (seed * 104729 % 997) / 997.0, float(seed * 1299709 % 991)


def instant3(model, *, datamodule, epochs, seed, reporter):
    """The engine's evaluator: returns at once."""
    acc, loss, macs = scores(seed)
    return {"val_accuracy": acc, "val_loss": loss, "macs": macs, "epochs": epochs}


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def gaps_ms(stamps: list[float], lo: int, hi: int) -> float:
    """Mean gap between completions lo..hi (1-based, inclusive)."""
    seg = stamps[max(0, lo - 2): hi]
    return 1000 * (seg[-1] - seg[0]) / max(1, len(seg) - 1)


def run_engine(n: int, workers: int, address: str, tmp: Path) -> dict:
    from search.config import load_config
    from search.engine import SearchEngine
    from spaces import register_space

    register_space("overhead-toy", overwrite=True)(tiny_space)
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp / 'm.db'}"], name="scale", space="overhead-toy",
                      objectives=OBJECTIVES, budget={"trials": n, "epochs": 1}, strategy={"name": "random"}, workers=workers,
                      executor="ray", address=address, evaluator={"function": "benchmarks.search_scale:instant3"}, out=str(tmp / "runs" / "scale"), save_weights=False)
    stamps: list[float] = []
    rss: dict[int, float] = {}
    cost_s = [0.0]

    class Timed(SearchEngine):
        def _commit(self, trial, o):  # one stamp per finished trial, after all the driver's work on it
            super()._commit(trial, o)
            stamps.append(time.perf_counter())
            if len(stamps) in (1000, n):
                rss[len(stamps)] = rss_mib()

        def _setup_search(self, resume, shape):  # time the space's cost model apart from the engine
            super()._setup_search(resume, shape)
            model = self.cost_model

            def timed(arch):
                t = time.perf_counter()
                try:
                    return model(arch)
                finally:
                    cost_s[0] += time.perf_counter() - t
            timed.hardware_kwargs = model.hardware_kwargs
            self.cost_model = timed

    engine = Timed(cfg, progress=False)
    t0 = time.perf_counter()
    summary = engine.run()
    wall = time.perf_counter() - t0
    assert summary["complete"] == n, summary["failures"][:3]
    loop = stamps[-1] - stamps[0]
    return {"first_100_ms": gaps_ms(stamps, 1, 100), "last_100_ms": gaps_ms(stamps, n - 99, n),
            "rss_1000_mib": rss.get(1000), "rss_end_mib": rss.get(n), "tracking_wait_s": summary["tracking_wait_s"],
            "per_trial_incl_wait_ms": 1000 * (loop + summary["tracking_wait_s"]) / (n - 1), "wall_s": wall,
            "first_dispatch_s": summary.get("first_dispatch_s"), "front": len(summary["front"]),
            "cost_model_ms_per_trial": 1000 * cost_s[0] / n}


def run_optuna(n: int, tmp: Path) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[o["direction"] for o in OBJECTIVES], sampler=optuna.samplers.RandomSampler(seed=0),
                                storage=JournalStorage(JournalFileBackend(str(tmp / "optuna.journal"))))
    stamps: list[float] = []
    rss: dict[int, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        trial = study.ask()
        x = trial.suggest_categorical("x", list(range(64)))
        y = trial.suggest_categorical("y", list(range(64)))
        study.tell(trial, list(scores(i)))
        stamps.append(time.perf_counter())
        if len(stamps) in (1000, n):
            rss[len(stamps)] = rss_mib()
    wall = time.perf_counter() - t0
    return {"first_100_ms": gaps_ms(stamps, 1, 100), "last_100_ms": gaps_ms(stamps, n - 99, n),
            "rss_1000_mib": rss.get(1000), "rss_end_mib": rss.get(n), "tracking_wait_s": 0.0,
            "per_trial_incl_wait_ms": 1000 * (stamps[-1] - stamps[0]) / (n - 1), "wall_s": wall,
            "front": len(study.best_trials)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=3, help="parallel trials (one per node by default)")
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chdir(tmp)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        nodes = len([nd for nd in ray.nodes() if nd["Alive"]])
        try:
            engine = run_engine(args.trials, args.workers, cluster.address, tmp)
        finally:
            ray.shutdown()
            cluster.shutdown()
        optuna_figs = None if args.skip_optuna else run_optuna(args.trials, tmp)
    load = open("/proc/loadavg").read().split()[:3]
    out = {"trials": args.trials, "nodes": nodes, "workers": args.workers, "engine": engine, "optuna_journal": optuna_figs,
           "loadavg_end": load}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    rows = [("abacus engine (Ray, 3 nodes)", engine)] + ([("plain Optuna, journal file", optuna_figs)] if optuna_figs else [])
    print(f"\n{args.trials} trials, instant evaluator, {nodes} Ray nodes, {args.workers} workers; load average at the end {' '.join(load)}")
    print(f"{'':32} {'trials 1-100':>13} {'last 100':>10} {'RSS@1000':>9} {'RSS@end':>8} {'final wait':>10} {'per trial incl. wait':>21}")
    for name, f in rows:
        r1000 = f"{f['rss_1000_mib']:5.0f} MiB" if f["rss_1000_mib"] is not None else "        -"
        print(f"{name:32} {f['first_100_ms']:>10.1f} ms {f['last_100_ms']:>7.1f} ms {r1000} {f['rss_end_mib']:>4.0f} MiB"
              f" {f['tracking_wait_s']:>8.2f} s {f['per_trial_incl_wait_ms']:>18.1f} ms")
    print(f"engine: of which the space's cost model (trace + hw_cost.estimate in the driver) {engine['cost_model_ms_per_trial']:.1f} ms per trial")
    if engine.get("first_dispatch_s") is not None:
        print(f"engine: process start to first trial dispatched {engine['first_dispatch_s']:.1f} s")


if __name__ == "__main__":
    main()
