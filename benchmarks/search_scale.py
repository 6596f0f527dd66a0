"""The engine at scale: 10,000 instant trials on a local 3-node Ray cluster, beside plain Optuna.

Every figure issue 17 names, in one run (``--trials 1000`` for a quick one):

- **start**: ``abacus search`` in a fresh process (fresh MLflow SQLite store, its own local Ray,
  2 workers, 4 instant trials; ``benchmarks/search_overhead.py``'s ``cli_start``): process start ->
  first trial dispatched, with its parts (interpreter + imports + config before ``run()``, the
  checks, ``ray.init`` + the warm-up's submission, the set-up), and last result -> process exit;
  ``--start-repeats N`` runs it N times (fresh each time) and prints the median; ``--start-only``
  stops there (default 3 runs);
- then, for the engine (``SearchEngine``, Ray executor on ``ray.cluster_utils.Cluster`` with 3
  nodes, MLflow on SQLite, three objectives from an evaluator that returns at once, a toy space
  whose cost model is the fast workloads path) and for plain Optuna (the same sampler, journal
  file storage, the same scores, ask/tell in a loop; in a fresh process, so its memory growth is
  its own), one after the other:
  - per-trial overhead: the mean gap between consecutive completions over trials 1-100 and over
    the last 100 (flat is the goal; the evaluator returns at once, so the gap is the driver's
    work: ask, cost model, dispatch to a Ray worker on another node, tell, journal, the front,
    the MLflow child run queued);
  - driver RSS after n/10 trials and at the end (1,000 and 10,000), and the growth per trial;
  - the end-of-run wait for queued MLflow writes (``tracking_wait_s``), and the effective cost
    per trial including it: (time of the loop + final wait) / trials;
  - the engine's per-trial time split: the space's cost model (``hw_cost``), Optuna's
    ask/suggest/tell (the sampler's, not the engine's), the rest (the engine's own).

``--sampler tpe|nsga2`` runs both sides with that sampler instead of random (random is what the
overhead figure uses: the sampler's own cost grows with the history for TPE).

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


class TimedCost:
    """The engine's cost model with its calls timed (everything else passes through)."""

    def __init__(self, model, call) -> None:
        self._model, self._call = model, call

    def __call__(self, arch):
        return self._call(arch)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def checkpoints(n: int) -> tuple[int, int]:
    """Where driver RSS is read: at 1,000 and 10,000 trials for the full run (n/10 and n in general)."""
    return max(1, n // 10), n


def strategy_for(sampler: str) -> dict:
    return {"name": sampler, "options": {"seed": 0}} if sampler != "random" else {"name": "random"}


def run_engine(n: int, workers: int, address: str, tmp: Path, sampler: str) -> dict:
    from search import adapter
    from search.config import load_config
    from search.engine import SearchEngine
    from spaces import register_space

    register_space("overhead-toy", overwrite=True)(tiny_space)
    cfg = load_config(None, [f"mlflow.tracking_uri=sqlite:///{tmp / 'm.db'}"], name="scale", space="overhead-toy",
                      objectives=OBJECTIVES, budget={"trials": n, "epochs": 1}, strategy=strategy_for(sampler), workers=workers,
                      executor="ray", address=address, evaluator={"function": "benchmarks.search_scale:instant3"}, out=str(tmp / "runs" / "scale"), save_weights=False)
    stamps: list[float] = []
    rss: dict[int, float] = {}
    spent = {"cost_model": 0.0, "optuna": 0.0, "wait": 0.0}
    marks = checkpoints(n)

    def timed(part: str, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if stamps:  # from the first completion on, as the per-trial figures (no start-up in them)
                    spent[part] += time.perf_counter() - t
        return wrapper

    class Timed(SearchEngine):
        def _commit(self, trial, o):  # one stamp per finished trial, after all the driver's work on it
            super()._commit(trial, o)
            stamps.append(time.perf_counter())
            if len(stamps) in marks:
                rss[len(stamps)] = rss_mib()

        def _setup(self, resume, prepared):  # the space's cost model and Optuna (ask, suggest, tell) timed apart
            super()._setup(resume, prepared)
            self.cost_model = TimedCost(self.cost_model, timed("cost_model", self.cost_model))
            self.study.ask = timed("optuna", self.study.ask)
            self.study.tell = timed("optuna", self.study.tell)

        def _search(self, executor, *args):  # the driver idle, waiting for the next result
            executor.wait_one = timed("wait", executor.wait_one)
            return super()._search(executor, *args)

    real_suggest = adapter.suggest_arch
    adapter.suggest_arch = timed("optuna", real_suggest)
    try:
        engine = Timed(cfg, progress=False)
        t0 = time.perf_counter()
        summary = engine.run()
        wall = time.perf_counter() - t0
    finally:
        adapter.suggest_arch = real_suggest
    assert summary["complete"] == n, summary["failures"][:3]
    loop = stamps[-1] - stamps[0]
    return {"first_100_ms": gaps_ms(stamps, 1, 100), "last_100_ms": gaps_ms(stamps, n - 99, n),
            "rss_mib": {str(k): rss.get(k) for k in marks}, "tracking_wait_s": summary["tracking_wait_s"],
            "per_trial_incl_wait_ms": 1000 * (loop + summary["tracking_wait_s"]) / (n - 1), "wall_s": wall,
            "first_dispatch_s": summary.get("first_dispatch_s"), "startup": summary.get("startup"), "front": len(summary["front"]),
            "conclude_s": summary.get("conclude_s"), "cost_memo_hits": engine.cost_model.memo_hits,
            "cost_model_ms_per_trial": 1000 * spent["cost_model"] / (n - 1), "optuna_ms_per_trial": 1000 * spent["optuna"] / (n - 1),
            "wait_ms_per_trial": 1000 * spent["wait"] / (n - 1)}


def run_optuna_fresh(n: int, tmp: Path, sampler: str) -> dict:
    """``run_optuna`` in a fresh process, so its RSS growth is its own (run after the engine in
    the same process, its pages were already allocated and it showed no growth)."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_optuna, (n, tmp, sampler))


def run_optuna(n: int, tmp: Path, sampler: str) -> dict:
    """The peer: Optuna alone, same sampler, scores and objectives, journal file storage, ask/tell."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}[sampler]
    study = optuna.create_study(directions=[o["direction"] for o in OBJECTIVES], sampler=make(seed=0),
                                storage=JournalStorage(JournalFileBackend(str(tmp / f"optuna-{sampler}.journal"))))
    stamps: list[float] = []
    rss: dict[int, float] = {}
    marks = checkpoints(n)
    t0 = time.perf_counter()
    for i in range(n):
        trial = study.ask()
        trial.suggest_categorical("x", list(range(64)))
        trial.suggest_categorical("y", list(range(64)))
        study.tell(trial, list(scores(i)))
        stamps.append(time.perf_counter())
        if len(stamps) in marks:
            rss[len(stamps)] = rss_mib()
    wall = time.perf_counter() - t0
    return {"first_100_ms": gaps_ms(stamps, 1, 100), "last_100_ms": gaps_ms(stamps, n - 99, n),
            "rss_mib": {str(k): rss.get(k) for k in marks}, "tracking_wait_s": 0.0,
            "per_trial_incl_wait_ms": 1000 * (stamps[-1] - stamps[0]) / (n - 1), "wall_s": wall,
            "front": len(study.best_trials)}


def start_cluster(nodes: int = 3, tries: int = 3):
    """A local Ray cluster of ``nodes`` one-CPU nodes. Ray gives each raylet a fixed 30 s to
    register, which a heavily loaded machine can miss: the cluster is started again then."""
    from ray.cluster_utils import Cluster

    for attempt in range(tries):
        cluster = Cluster()
        try:
            cluster.add_node(num_cpus=1, include_dashboard=False)
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            return cluster
        except Exception as exc:
            cluster.shutdown()
            if "timed out during startup" not in str(exc) or attempt == tries - 1:
                raise
            print(f"Ray node start timed out (load average {loadavg()}): starting the cluster again", file=sys.stderr)


def start_figures(tmp: Path, repeats: int) -> dict:
    """``repeats`` fresh-process starts (each in a fresh directory and store): every run's figures
    and the median of each, or the error of a run that failed (Ray's node start can time out on a
    starved machine)."""
    import statistics

    from benchmarks.search_overhead import cli_start

    runs = []
    for i in range(repeats):
        d = tmp / f"start-{i}"
        d.mkdir()
        try:
            runs.append(cli_start(d))
        except (RuntimeError, OSError) as exc:
            return {"error": str(exc), "loadavg": loadavg(), "runs": runs}
    keys = ("process_to_first_dispatch_s", "run_to_first_dispatch_s", "before_run_s", "exit_s", "whole_command_s", "conclude_s")
    median = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    parts = sorted({p for r in runs for p in r["startup"]})
    median["startup"] = {p: round(statistics.median(r["startup"].get(p, 0.0) for r in runs), 2) for p in parts}
    return {"runs": runs, "median": median, "loadavg": [r["loadavg"] for r in runs]}


def print_start(start: dict) -> None:
    if "error" in start:
        print(f"abacus search in a fresh process: failed ({start['error']}); load average then {start['loadavg']}")
        return
    m, n = start["median"], len(start["runs"])
    print(f"abacus search in a fresh process (fresh MLflow SQLite store, its own local Ray, 2 workers), median of {n}: "
          f"first trial dispatched {m['process_to_first_dispatch_s']:.1f} s after the process started "
          f"(before run(): interpreter, imports, config {m['before_run_s']:.1f} s; run() to first dispatch {m['run_to_first_dispatch_s']:.1f} s; "
          f"parts, overlapped: {m['startup']}); last result to process exit {m['exit_s']:.1f} s (of which the end of the run "
          f"{m['conclude_s']:.1f} s); whole 4-trial command {m['whole_command_s']:.1f} s; load average at each run's end {start['loadavg']}")
    for r in start["runs"]:
        print(f"  run: first dispatch {r['process_to_first_dispatch_s']:.1f} s (before run() {r['before_run_s']:.1f}), "
              f"parts {r['startup']}, exit {r['exit_s']:.1f} s, command {r['whole_command_s']:.1f} s, load {r['loadavg']}")


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000, help="10,000 for the issue's figures; 1000 for a quick run")
    ap.add_argument("--workers", type=int, default=3, help="parallel trials (one per node by default)")
    ap.add_argument("--sampler", choices=("random", "tpe", "nsga2"), default="random",
                    help="random (default: the overhead figure, as the Optuna peer); tpe/nsga2 show the sampler's own cost")
    ap.add_argument("--skip-optuna", action="store_true")
    ap.add_argument("--skip-start", action="store_true", help="skip the fresh-process start measurement (abacus search)")
    ap.add_argument("--start-only", action="store_true", help="only the fresh-process start and exit measurement")
    ap.add_argument("--start-repeats", type=int, default=None, help="fresh-process starts to run (median printed); default 1, 3 with --start-only")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    import ray

    load_start = loadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chdir(tmp)
        start = None
        if not args.skip_start:  # first: a fresh process, fresh MLflow store, its own local Ray
            start = start_figures(tmp, args.start_repeats or (3 if args.start_only else 1))
            if args.start_only:
                print_start(start)
                return
        cluster = start_cluster()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        nodes = len([nd for nd in ray.nodes() if nd["Alive"]])
        try:
            engine = run_engine(args.trials, args.workers, cluster.address, tmp, args.sampler)
        finally:
            ray.shutdown()
            cluster.shutdown()
        load_engine = loadavg()
        optuna_figs = None if args.skip_optuna else run_optuna_fresh(args.trials, tmp, args.sampler)
    load = loadavg()
    out = {"trials": args.trials, "nodes": nodes, "workers": args.workers, "sampler": args.sampler, "engine": engine,
           "optuna_journal": optuna_figs, "start": start, "loadavg": {"start": load_start, "after_engine": load_engine, "end": load}}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    n = args.trials
    lo, hi = checkpoints(n)
    rows = [("abacus engine (Ray, 3 nodes)", engine)] + ([("plain Optuna, journal file", optuna_figs)] if optuna_figs else [])
    print(f"\n{n} trials, instant evaluator, {args.sampler} sampler, {nodes} Ray nodes, {args.workers} workers; "
          f"load average {load_start} (start), {load_engine} (after the engine), {load} (end)")
    print(f"{'':30} {'trials 1-100':>13} {f'{n - 99}-{n}':>12} {f'RSS@{lo}':>10} {f'RSS@{hi}':>10} {'growth/trial':>13} {'final wait':>10} {'per trial incl. wait':>21}")
    for name, f in rows:
        r_lo, r_hi = f["rss_mib"][str(lo)], f["rss_mib"][str(hi)]
        growth = f"{(r_hi - r_lo) * 1024 / max(1, hi - lo):8.2f} KiB" if r_lo is not None and hi > lo else "-"
        print(f"{name:30} {f['first_100_ms']:>10.1f} ms {f['last_100_ms']:>9.1f} ms {r_lo:>6.0f} MiB {r_hi:>6.0f} MiB {growth:>13}"
              f" {f['tracking_wait_s']:>8.2f} s {f['per_trial_incl_wait_ms']:>18.1f} ms")
    own = engine["per_trial_incl_wait_ms"] - engine["cost_model_ms_per_trial"] - engine["optuna_ms_per_trial"] - engine["wait_ms_per_trial"]
    print(f"engine, per trial (all {n}, incl. the final wait): {engine['per_trial_incl_wait_ms']:.1f} ms = the space's cost model "
          f"(hw_cost.estimate on its workloads, in the driver) {engine['cost_model_ms_per_trial']:.1f} ms + Optuna's ask/suggest/tell "
          f"{engine['optuna_ms_per_trial']:.1f} ms + the driver idle, waiting for a worker's result (Ray and the workers: "
          f"build, seeding, data copy) {engine['wait_ms_per_trial']:.1f} ms + the rest (the engine's own bookkeeping, Ray submit and get) {own:.1f} ms")
    print(f"engine: the cost model answered {engine['cost_memo_hits']} of {n} asks from its memo (an architecture asked before; "
          f"the toy space has 4,096)")
    print(f"engine: run() to first trial dispatched on the running cluster {engine['first_dispatch_s']:.1f} s; end of run "
          f"{engine['conclude_s']:.1f} s (of which the final MLflow wait {engine['tracking_wait_s']:.2f} s)")
    if start is not None:
        print_start(start)

if __name__ == "__main__":
    main()
