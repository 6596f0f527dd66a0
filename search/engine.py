"""The search loop: Optuna study in the driver (ask/tell), trials on an executor, MLflow records.

One trial: ``study.ask()`` -> architecture through the space adapter -> cost model (cheap, in the
driver) -> constraints (violators are never trained) -> executor runs build+train -> result ->
``study.tell`` -> MLflow child run. At the end: the Pareto front, its tags, artifacts, summary.
"""

from __future__ import annotations

import json
import logging
import sys
from concurrent.futures import Future
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from search.config import ExperimentConfig, dump_config
from search.pareto import default_reference_point, hypervolume, non_dominated_mask
from search.report import front_table, plot_pareto_png, write_json_atomic, write_pareto_csv
from search.tracking import Tracker, resolve_tracking_uri
from search.worker import TrialResult, TrialSpec

COST_KEYS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram", "lut_util", "ff_util",
             "dsp_util", "bram_util", "onchip_dynamic_power_w", "ddr_bytes", "ops", "feasible")
RUN_FILE = "run.json"  # parent run id and tracking store of a run directory (what resume needs)


@dataclass
class TrialRecord:
    number: int
    arch: dict[str, Any]
    arch_id: str
    state: str
    values: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    run_id: str = ""


class CostModel:
    """Costs an architecture before training: the space's workloads if it describes them, else a
    traced forward pass of the built model."""

    def __init__(self, cfg: ExperimentConfig, space, input_shape: tuple[int, ...], num_classes: int,
                 task: dict[str, Any] | None = None) -> None:
        import hw_cost

        self.cfg, self.space = cfg, space
        self.input_shape, self.num_classes = input_shape, num_classes
        # what the builder takes from the data (input_shape, num_classes, an SR task's scale, ...)
        self.task = dict(task) if task is not None else {"input_shape": input_shape, "num_classes": num_classes}
        self.device = hw_cost.get_device(cfg.hardware.device)
        from hw_cost.constraints import parse_constraint

        self.constraints = [parse_constraint(c) for c in cfg.constraints]

    def hardware_kwargs(self) -> dict[str, Any]:
        hw = self.cfg.hardware
        return dict(device=self.device, style=hw.style, pe_array=hw.pe_array, default_bits=hw.default_bits, mult_impl=hw.mult_impl)

    def __call__(self, arch: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
        task = {k: v for k, v in self.task.items() if k != "input_shape"}
        workloads = self.space.workloads(arch, (1, *self.input_shape), **task)
        if workloads is None:
            import supernets
            from supernets.dynamic import assume_costs

            target = supernets.build(self.space, arch, input_shape=self.input_shape, **task)
            # before training a dynamic net (ManiDP gates, FADN branches) is screened at its target;
            # the worker re-costs it on what it measured on validation data (that cost is the one kept)
            assume_costs(target, "target")
        else:
            target = workloads
        import hw_cost

        report = hw_cost.estimate(target, (1, *self.input_shape), **self.hardware_kwargs())
        cost = {k: float(v) for k, v in report.to_dict().items() if isinstance(v, (int, float, bool))}
        violations = [] if report.feasible else [report.infeasible_reason]
        for c in self.constraints:
            ok, msg = c.check(cost, self.device)
            if not ok:
                violations.append(msg)
        if report.uncosted:
            cost["uncosted_modules"] = float(len(report.uncosted))
        return cost, violations


class SearchEngine:
    def __init__(self, cfg: ExperimentConfig, *, console=None, progress: bool = True) -> None:
        from rich.console import Console

        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.records: dict[int, TrialRecord] = {}
        self._front_tags: dict[int, str] = {}
        self._logged: dict[int, str] = {}  # child runs already in the store (found on resume)
        self.retrained: list[dict[str, Any]] = []
        self.scheduler = None
        self.oneshot = None  # search.oneshot.OneShot when the config has a ``oneshot`` block

    # -- set-up ----------------------------------------------------------------------------
    def _setup(self, resume: bool) -> None:
        import evaluators
        from spaces import get_space

        from search.strategies import make_sampler

        cfg = self.cfg
        self.space = get_space(cfg.space).restricted(cfg.restrict).with_options(cfg.space_options)
        dm = evaluators.get_datamodule(cfg.evaluator.data, **{"seed": cfg.seed, "batch_size": cfg.evaluator.batch_size, **cfg.evaluator.data_kwargs})
        self.input_shape = tuple(int(x) for x in dm.input_shape)
        self.num_classes = int(dm.num_classes)
        builder_kwargs = getattr(dm, "builder_kwargs", None)
        task = builder_kwargs() if callable(builder_kwargs) else None
        self.cost_model = CostModel(cfg, self.space, self.input_shape, self.num_classes, task)
        self.out = cfg.out_dir
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if resume:
            run = json.loads((self.out / RUN_FILE).read_text())
            self.tracker = Tracker(run["tracking_uri"], cfg.experiment_name)
            self.parent_id = run["parent_run_id"]
            self.tracker.attach_parent(self.parent_id)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(cfg))
            self.tracker = Tracker(resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.experiment_name)
            self.parent_id = self.tracker.start_parent(cfg.name, params=_flatten(cfg.model_dump(mode="json")), tags=_version_tags())
            self.tracker.log_artifact(self.out / "config.yaml")
            write_json_atomic(self.out / RUN_FILE, {"parent_run_id": self.parent_id, "tracking_uri": self.tracker.uri,
                                                    "mlflow_experiment_id": self.tracker.experiment_id, "name": cfg.name})
        from search.journal import BufferedJournalFileBackend

        self.journal = BufferedJournalFileBackend(str(self.out / "study.journal"))
        storage = optuna.storages.JournalStorage(self.journal)
        self.study = optuna.create_study(study_name=cfg.name, directions=cfg.directions, sampler=make_sampler(cfg, self.space),
                                         storage=storage, load_if_exists=resume)
        if resume:
            self._logged = self.tracker.child_runs()
            self._recover()

    def _recover(self) -> None:
        """Rebuild the records from the journal after a crash.

        Finished trials are taken as they are (never re-run). A trial that had its result but
        crashed before ``tell`` is finished now (its MLflow child run is logged if missing). A
        trial that was still training is marked interrupted and re-queued once with the same
        architecture; a re-queued trial interrupted again is recorded as failed.
        """
        for ft in self.study.get_trials(deepcopy=False):
            attrs = ft.user_attrs
            if attrs.get("interrupted"):
                continue
            if ft.state == optuna.trial.TrialState.WAITING:
                continue
            trial = optuna.trial.Trial(self.study, ft._trial_id)
            if ft.state == optuna.trial.TrialState.RUNNING:
                if "outcome" in attrs:
                    self._commit(trial, attrs["outcome"])
                elif "requeued_from" in attrs:
                    o = self._outcome(attrs.get("arch", {}), attrs.get("arch_id", ""), {}, TrialResult(ft.number, "fail", reason="interrupted twice (driver stopped while it ran, also after a re-queue)"))
                    trial.set_user_attr("outcome", o)
                    self._commit(trial, o)
                else:
                    trial.set_user_attr("interrupted", True)
                    self.study.tell(ft.number, state=optuna.trial.TrialState.FAIL)
                    self.study.enqueue_trial(ft.params, user_attrs={"requeued_from": ft.number})
                    self.journal.flush()
                continue
            o = attrs.get("outcome")
            if o is not None:
                rid = self._logged.get(ft.number) or self.tracker.submit(self._log_child, ft.number, o)  # lost with the crash
                self.records[ft.number] = TrialRecord(ft.number, o["arch"], o["arch_id"], o["state"], o["values"], o["metrics"], o["reason"], rid)

    def _counted(self) -> int:
        """Trials that count against the budget: every asked trial except interrupted ones."""
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get("interrupted"))

    def _spec(self, number: int, arch: dict[str, Any], cost: dict[str, float]) -> TrialSpec:
        ev = self.cfg.evaluator
        return TrialSpec(number=number, space=self.space, arch=arch, data=ev.data, data_kwargs=dict(ev.data_kwargs),
                         epochs=self.cfg.budget.epochs, lr=ev.lr, optimizer=ev.optimizer, weight_decay=ev.weight_decay,
                         batch_size=ev.batch_size, seed=self.cfg.seed + number,
                         threads=max(1, int(self.cfg.resources.cpus_per_trial)),
                         accelerator="gpu" if self.cfg.resources.gpus_per_trial > 0 else "cpu",
                         scheduler=self.scheduler, objectives=self.cfg.objective_names, directions=self.cfg.directions,
                         static_metrics=cost, hardware=self.cost_model.hardware_kwargs(), save_artifacts=self.cfg.save_weights,
                         evaluate_fn=ev.function, evaluator_options=_absolute_paths(ev.options))

    def _make_scheduler(self):
        """The early-stopping scheduler, shared by all workers: a Ray actor, or a local object."""
        if self.cfg.scheduler.name == "none":
            return None
        from search.schedulers import SchedulerBox

        if self.cfg.executor == "local":
            return SchedulerBox(self.cfg)
        import ray

        return ray.remote(num_cpus=0)(SchedulerBox).remote(self.cfg)

    # -- the loop --------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        from search.adapter import suggest_arch
        from search.executors import make_executor

        started = time.perf_counter()
        self._setup(resume)
        cfg = self.cfg
        if cfg.oneshot is not None:  # train the supernet once; candidates are then scored with its weights
            from search.oneshot import OneShot

            self.oneshot = OneShot(self)
            executor = self.oneshot.start(resume)
        else:
            executor = make_executor(cfg)
        self.scheduler = self._make_scheduler()
        pending: dict[int, tuple[optuna.trial.Trial, dict, str, dict]] = {}
        asked = self._counted()
        progress, task = self._progress(done=len(self.records))
        status = "FAILED"
        try:
            while asked < cfg.budget.trials or executor.in_flight:
                while asked < cfg.budget.trials and executor.in_flight < getattr(executor, "capacity", cfg.workers):
                    trial = self.study.ask()
                    asked += 1
                    arch = suggest_arch(trial, self.space, cfg.fixed)
                    aid = self.space.arch_id(arch)
                    trial.set_user_attr("arch", arch)
                    trial.set_user_attr("arch_id", aid)
                    try:
                        cost, violations = self.cost_model(arch)
                    except Exception as exc:  # a cost-model failure is this candidate's failure
                        self._finish(trial, arch, aid, {}, TrialResult(trial.number, "fail", reason=f"cost model: {type(exc).__name__}: {exc}"))
                        self._advance(progress, task)
                        continue
                    if violations:
                        self._finish(trial, arch, aid, cost, TrialResult(trial.number, "infeasible", reason="; ".join(violations)))
                        self._advance(progress, task)
                        continue
                    pending[trial.number] = (trial, arch, aid, cost)
                    self.journal.flush()  # the running trial is on disk: a crash from here re-queues it
                    executor.submit(self._spec(trial.number, arch, cost))
                if executor.in_flight:
                    result = executor.wait_one()
                    trial, arch, aid, cost = pending.pop(result.number)
                    self._finish(trial, arch, aid, cost, result)
                    self._advance(progress, task)
            if cfg.retrain is not None:
                self.retrained = self._retrain(self.oneshot.retrain_executor() if self.oneshot else executor)
            status = "FINISHED"
        finally:
            self.journal.flush()
            executor.shutdown()
            if progress is not None:
                progress.stop()
            summary = self._conclude(time.perf_counter() - started)
            self.tracker.finish_parent(status)
        return summary

    def _outcome(self, arch: dict, aid: str, cost: dict, result: TrialResult) -> dict[str, Any]:
        """Everything about a finished trial, as JSON, kept in the journal before anything else
        is written: a crash after this point is finished from it on resume."""
        cfg = self.cfg
        metrics = {**result.metrics, **cost, **result.cost}
        state, reason = result.state, result.reason
        values: dict[str, float] = {}
        if state == "complete":
            missing = [n for n in cfg.objective_names if n not in metrics]
            if missing:
                state, reason = "fail", f"objective(s) not produced: {', '.join(missing)}"
            else:
                values = {n: float(metrics[n]) for n in cfg.objective_names}
                if any(v != v for v in values.values()):
                    state, reason = "fail", "NaN objective value"
        tags = {"arch_id": aid, "node": result.node or "", "cost_source": "measured" if result.cost else "static"}
        if result.score_source:
            tags["score_source"] = result.score_source
        if state == "pruned":
            tags["pruned_at_epoch"] = str(int(result.metrics.get("epochs", len(result.history))))
        if metrics:
            metrics["worker_time_s"] = result.worker_time_s
        return {"arch": arch, "arch_id": aid, "state": state, "values": values, "reason": reason[:2000],
                "metrics": {k: v for k, v in metrics.items() if v == v}, "history": result.history, "tags": tags,
                "number": result.number}

    def _finish(self, trial: optuna.trial.Trial, arch: dict, aid: str, cost: dict, result: TrialResult) -> None:
        outcome = self._outcome(arch, aid, cost, result)
        if result.artifacts:
            from search.export import unpack_trial_artifacts

            unpack_trial_artifacts(result.artifacts, self.out / "trials" / str(trial.number))
        trial.set_user_attr("outcome", outcome)
        self.journal.flush()  # the outcome is on disk before anything else is written
        self._commit(trial, outcome)
        if outcome["state"] == "fail" and outcome["reason"]:
            self.console.print(f"[yellow]trial {trial.number} failed:[/] {outcome['reason'].splitlines()[0][:200]}")

    def _commit(self, trial: optuna.trial.Trial, o: dict[str, Any]) -> None:
        """MLflow child run (unless one was logged before a crash), then ``tell``, then the record."""
        cfg = self.cfg
        rid = self._logged.get(trial.number)
        if not rid:
            rid = self.tracker.submit(self._log_child, trial.number, o)
        state = o["state"]
        if state == "complete":
            self.study.tell(trial, [o["values"][n] for n in cfg.objective_names])
            if self.scheduler is not None:
                from search.schedulers import call

                call(self.scheduler, "finish", trial.number, o["values"][cfg.objective_names[0]])
        elif state == "pruned":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.journal.flush()
        self.records[trial.number] = TrialRecord(trial.number, o["arch"], o["arch_id"], state, o["values"], o["metrics"], o["reason"], rid)
        if state == "complete":
            self._update_front_tags()
            ref = self._fixed_reference()
            if ref is not None:  # live curve when the reference point is known up front
                _, values, _ = self._front()
                self.tracker.submit(self.tracker.log_parent_metrics, {"hypervolume": hypervolume(values, cfg.directions, ref)}, trial.number)

    def _fixed_reference(self) -> np.ndarray | None:
        """The configured reference point, when it covers every objective."""
        rp = self.cfg.reference_point
        if all(n in rp for n in self.cfg.objective_names):
            return np.array([rp[n] for n in self.cfg.objective_names], dtype=float)
        return None

    def _retrain(self, executor) -> list[dict[str, Any]]:
        """Train each front member again from scratch with the ``retrain`` budget (new seed, no
        early stopping) on the same executor; each becomes a ``retrain`` child run."""
        import dataclasses

        rt = self.cfg.retrain
        front, _, _ = self._front()
        specs = {}
        for rec in front:
            cost = {k: v for k, v in rec.metrics.items() if k in COST_KEYS}
            spec = dataclasses.replace(self._spec(rec.number, rec.arch, cost), epochs=rt.epochs, scheduler=None,
                                       seed=self.cfg.seed + rt.seed_offset + rec.number, lr=rt.lr or self.cfg.evaluator.lr)
            specs[rec.number] = (rec, cost)
            executor.submit(spec)
        out = []
        while executor.in_flight:
            result = executor.wait_one()
            rec, cost = specs[result.number]
            o = self._outcome(rec.arch, rec.arch_id, cost, result)
            self.console.print(f"retrained trial {rec.number}: {o['state']}" + (f" ({o['reason']})" if o["reason"] else ""))
            if result.artifacts:
                from search.export import unpack_trial_artifacts

                unpack_trial_artifacts(result.artifacts, self.out / "retrain" / str(rec.number))
            fut = self.tracker.submit(self._log_retrain, rec.number, o)
            out.append({"trial": rec.number, "arch_id": rec.arch_id, "state": o["state"], "values": o["values"],
                        "search_values": rec.values, "run_id": fut, "reason": o["reason"]})
        return sorted(out, key=lambda r: r["trial"])

    def _log_retrain(self, number: int, o: dict[str, Any]) -> str:
        rid = self.tracker.log_trial(number, o["arch"], o["tags"], o["metrics"], o["history"], o["state"], o["reason"], role="retrain")
        d = self.out / "retrain" / str(number)
        if d.is_dir():
            self.tracker.client.log_artifacts(rid, str(d))
        return rid

    def _log_child(self, number: int, o: dict[str, Any]) -> str:
        """On the tracker's writer thread: the child run, then the trial's weights as its artifacts."""
        rid = self.tracker.log_trial(number, o["arch"], o["tags"], o["metrics"], o["history"], o["state"], o["reason"])
        trial_dir = self.out / "trials" / str(number)
        if trial_dir.is_dir():  # weights + arch.json, unpacked from the worker's result by _finish
            self.tracker.client.log_artifacts(rid, str(trial_dir))
        return rid

    def _update_front_tags(self) -> None:
        """Keep each complete child run's ``pareto`` tag right as the front changes."""
        front, _, complete = self._front()
        on = {r.number for r in front}
        for r in complete:
            want = "true" if r.number in on else "false"
            if self._front_tags.get(r.number) != want:
                self.tracker.submit(self.tracker.set_tag, r.run_id, "pareto", want)
                self._front_tags[r.number] = want

    # -- progress --------------------------------------------------------------------------
    def _progress(self, done: int = 0):
        if not self.show_progress:
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console, transient=False)
        task = progress.add_task(self.cfg.name, total=self.cfg.budget.trials, completed=done, detail="")
        progress.start()
        return progress, task

    def _advance(self, progress, task) -> None:
        if progress is None:
            return
        counts = self._counts()
        front = sum(v == "true" for v in self._front_tags.values())  # kept current by _update_front_tags
        progress.update(task, advance=1, detail=f"done {counts['complete']}  failed {counts['failed']}  infeasible {counts['infeasible']}  front {front}")

    # -- the end ---------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        states = [r.state for r in self.records.values()]
        return {"complete": states.count("complete"), "failed": states.count("fail"),
                "pruned": states.count("pruned"), "infeasible": states.count("infeasible")}

    def _front(self) -> tuple[list[TrialRecord], np.ndarray, list[TrialRecord]]:
        complete = sorted((r for r in self.records.values() if r.state == "complete"), key=lambda r: r.number)
        if not complete:
            return [], np.zeros((0, len(self.cfg.objectives))), []
        values = np.array([[r.values[n] for n in self.cfg.objective_names] for r in complete])
        mask = non_dominated_mask(values, self.cfg.directions)
        return [r for r, m in zip(complete, mask) if m], values, complete

    def _conclude(self, wall_s: float) -> dict[str, Any]:
        cfg = self.cfg
        names, dirs = cfg.objective_names, cfg.directions
        self._update_front_tags()
        self.tracker.flush()  # every child run and tag is in the store before the summary names them
        for r in self.records.values():
            if isinstance(r.run_id, Future):
                r.run_id = r.run_id.result()
        for r in self.retrained:
            if isinstance(r["run_id"], Future):
                r["run_id"] = r["run_id"].result()
        front, values, complete = self._front()
        ref = None
        hv = 0.0
        if complete:
            ref = default_reference_point(values, dirs)
            for i, n in enumerate(names):
                if n in cfg.reference_point:
                    ref[i] = cfg.reference_point[n]
            hv = hypervolume(values, dirs, ref)
            if self._fixed_reference() is None:
                # The hypervolume as it grew, on the final reference point (step = trial number).
                curve = [(rec.number, hypervolume(values[: k + 1], dirs, ref)) for k, rec in enumerate(complete)]
                self.tracker.log_parent_series("hypervolume", curve)
        front_rows = [{"trial": r.number, "arch_id": r.arch_id, "arch": r.arch, "values": r.values, "run_id": r.run_id}
                      for r in sorted(front, key=lambda r: r.values[names[0]])]
        counts = self._counts()
        summary = {
            "experiment": cfg.experiment_name,
            "mlflow_experiment_id": self.tracker.experiment_id,
            "parent_run_id": self.parent_id,
            "tracking_uri": self.tracker.uri,
            "space": cfg.space,
            "objectives": [{"name": o.name, "direction": o.direction} for o in cfg.objectives],
            "trials": len(self.records),
            **counts,
            "front": front_rows,
            "hypervolume": hv,
            "reference_point": None if ref is None else {n: float(v) for n, v in zip(names, ref)},
            "wall_time_s": round(wall_s, 2),
            "retrained": self.retrained,
            "failures": [{"trial": r.number, "state": r.state, "reason": r.reason} for r in sorted(self.records.values(), key=lambda r: r.number) if r.state != "complete"],
        }
        if complete:
            write_pareto_csv(self.out / "pareto.csv", front_rows, names)
            plot_pareto_png(self.out / "pareto.png", values, non_dominated_mask(values, dirs), names, dirs, f"{cfg.name}: {len(front)} on the front of {len(complete)}")
            from search.html_report import hover_text, write_pareto_html

            write_pareto_html(self.out / "pareto.html", values, non_dominated_mask(values, dirs), names, dirs,
                              [hover_text(r.number, r.arch_id, r.arch, r.values) for r in complete],
                              f"{cfg.name}: {len(front)} on the front of {len(complete)}")
            for name in ("pareto.csv", "pareto.png", "pareto.html"):
                self.tracker.log_artifact(self.out / name)
            self.tracker.log_parent_metrics({"front_size": len(front), "hypervolume_final": hv, **{f"n_{k}": v for k, v in counts.items()}})
        write_json_atomic(self.out / "summary.json", summary)
        self.tracker.log_artifact(self.out / "summary.json")
        for key, value in cfg.evaluator.options.items():  # what the evaluator read (a DeFeat teacher) goes with the search
            path = Path(value) if isinstance(value, str) else None
            if path is not None and path.is_dir():
                self.tracker.client.log_artifacts(self.parent_id, str(path), f"evaluator_inputs/{key}")
            elif path is not None and path.is_file():
                self.tracker.log_artifact(path, f"evaluator_inputs/{key}")
        return summary

    def print_front(self, summary: dict[str, Any]) -> None:
        from rich.console import Console

        out = Console()
        out.print(front_table(summary["front"], self.cfg.objective_names,
                              f"Pareto front of {summary['experiment']} ({len(summary['front'])} of {summary['complete']} complete trials)"))
        ref = summary["reference_point"]
        out.print(f"hypervolume {summary['hypervolume']:.6g} (reference point {ref}); complete {summary['complete']}, failed {summary['failed']}, "
                  f"infeasible {summary['infeasible']}, pruned {summary['pruned']}; wall time {summary['wall_time_s']:.1f} s")
        out.print(f"summary: {self.out / 'summary.json'}   MLflow: experiment {summary['mlflow_experiment_id']}, parent run {summary['parent_run_id']} ({summary['tracking_uri']})")


def _absolute_paths(options: dict[str, Any]) -> dict[str, Any]:
    """Option values that are paths, made absolute against the driver's directory (workers may run
    elsewhere): strings with a path separator, or naming something that exists."""
    import os

    return {k: str(Path(v).resolve()) if isinstance(v, str) and (os.sep in v or Path(v).exists()) else v for k, v in options.items()}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _version_tags() -> dict[str, str]:
    import importlib.metadata as md
    import subprocess

    tags = {"python": sys.version.split()[0]}
    for pkg in ("abacus-nas", "torch", "optuna", "ray", "mlflow", "pytorch-lightning"):
        try:
            tags[f"version.{pkg}"] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
        if commit:
            tags["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


logging.getLogger("optuna").setLevel(logging.WARNING)
