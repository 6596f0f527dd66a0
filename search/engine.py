"""The search loop: Optuna study in the driver (ask/tell), trials on an executor, MLflow records.

One trial: ``study.ask()`` -> architecture through the space adapter -> cost model (cheap, in the
driver) -> constraints (violators are never trained) -> executor runs build+train -> result ->
``study.tell`` -> MLflow child run. At the end: the Pareto front, its tags, artifacts, summary.
"""

from __future__ import annotations

import collections
import logging
from array import array
import sys
from concurrent.futures import Future
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import optuna

from search.archive import ParetoArchive
from search.config import ExperimentConfig, dump_config
from search.budget import TrialBudget
from search.problem import define_problem
from search.report import front_table, plot_pareto_png, write_json_atomic, write_pareto_csv
from search.retrain import attach_test_values, retrain_front, selection_note
from search.splits import split_seed
from search.tracking import Tracker, resolve_tracking_uri
from search.states import TrialState
from search.strategies import CONSTRAINED_STRATEGIES
from search.worker import TrialResult, TrialSpec

COST_KEYS = ("energy_mj", "latency_ms", "throughput_fps", "power_w", "lut", "ff", "dsp", "bram", "lut_util", "ff_util",
             "dsp_util", "bram_util", "onchip_dynamic_power_w", "ddr_bytes", "ops", "feasible")
COST_MEMO = 4096  # architectures whose cost the driver remembers (least recently asked dropped first)
RUN_FILE = "run.json"  # parent run id and tracking store of a run directory (what resume needs)


@dataclass
class TrialRecord:
    number: int
    arch: dict[str, Any]
    arch_id: str
    state: TrialState
    values: dict[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    run_id: str = ""


class PackedMetrics(Mapping[str, float]):
    """A finished trial's metrics kept by its ``TrialRecord`` for the whole search (the front's
    cost fields for retraining, a coarse-to-fine stage's limits): the values as doubles under a
    key tuple shared by every record with the same keys, ~0.3 KiB instead of ~1.4 KiB for a dict
    of ~25 floats. Integers read back as floats. The journal and MLflow get the outcome's own dict."""

    __slots__ = ("_index", "_values")
    _shared: dict[tuple[str, ...], dict[str, int]] = {}

    def __init__(self, metrics: Mapping[str, float]) -> None:
        keys = tuple(metrics)
        index = self._shared.get(keys)
        if index is None:
            index = self._shared.setdefault(keys, {k: i for i, k in enumerate(keys)})
        self._index = index
        self._values = array("d", metrics.values())

    def __getitem__(self, key: str) -> float:
        return self._values[self._index[key]]

    def __iter__(self):
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"PackedMetrics({dict(self)!r})"


def pack_metrics(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """``PackedMetrics`` when every value is a number, else the dict as it is."""
    if all(isinstance(v, (int, float)) for v in metrics.values()):
        return PackedMetrics(metrics)
    return metrics


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
        self._memo: collections.OrderedDict[str, tuple[tuple[str, ...], array, tuple[str, ...]]] = collections.OrderedDict()
        self._keys: tuple[str, ...] = ()
        self.memo_size = COST_MEMO
        self.memo_hits = 0

    def hardware_kwargs(self) -> dict[str, Any]:
        hw = self.cfg.hardware
        return dict(device=self.device, style=hw.style, pe_array=hw.pe_array, default_bits=hw.default_bits, mult_impl=hw.mult_impl)

    def __call__(self, arch: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
        """(cost fields, constraint violations) of ``arch``; the same architecture asked again
        (a small space, a converging sampler, a re-queued trial) is answered from a bounded memo:
        hw_cost's per-call time (~2.5 ms for a one-row architecture, most of it fixed per call)
        is paid once per distinct architecture."""
        from spaces.space import canonical_json

        key = canonical_json(arch)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            self.memo_hits += 1
            keys, values, violations = hit
            return dict(zip(keys, values)), list(violations)
        cost, violations = self._cost(arch)
        keys = tuple(cost)
        if keys == self._keys:  # one shared key tuple; the values as doubles: ~0.3 KiB an entry
            keys = self._keys
        self._keys = keys
        self._memo[key] = (keys, array("d", cost.values()), tuple(violations))
        if len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
        return cost, violations

    def _cost(self, arch: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
        from search.cost_inputs import cost_reports

        # the space's workloads on the batch path, else the built network traced (a dynamic net at
        # its target cost; the worker re-costs it on what it measured on validation data)
        report = cost_reports(self.space, [arch], self.input_shape, self.hardware_kwargs(), task=self.task)[0]
        cost = {k: float(v) for k, v in report.to_dict().items() if isinstance(v, (int, float, bool))}
        violations = [] if report.feasible else [report.infeasible_reason]
        for c in self.constraints:
            ok, msg = c.check(cost, self.device)
            if not ok:
                violations.append(msg)
        if report.uncosted:
            cost["uncosted_modules"] = float(len(report.uncosted))
        return cost, violations

    def violation_amounts(self, cost: dict[str, float]) -> list[float]:
        """Optuna's constraint values, one per constraint: <= 0 when satisfied, else how far off
        relative to the bound (so a sampler with ``constraints_func`` learns the boundary)."""
        out = []
        for c in self.constraints:
            ok, _ = c.check(cost, self.device)
            bound = c.bound(self.device)
            v = float(cost[c.field])
            amount = (v - bound if c.op in ("<=", "<") else bound - v) / max(abs(bound), 1e-12)
            if amount != amount:  # an unbuildable design has no latency/energy (NaN): violated by a unit
                amount = 1.0
            out.append(min(amount, 0.0) if ok else max(amount, 1e-9))
        return out


class SearchEngine:
    def __init__(self, cfg: ExperimentConfig, *, console=None, progress: bool | str = True) -> None:
        from rich.console import Console

        self.cfg = cfg
        self.console = console or Console(stderr=True)
        # True: the live bar; False: nothing; or a mode of search.progress ("bar", "log", "none")
        self.show_progress = {True: "bar", False: "none"}.get(progress, progress)
        self.records: dict[int, TrialRecord] = {}
        self._tally: collections.Counter[str] = collections.Counter()  # records per state
        self._unresolved: collections.deque[TrialRecord] = collections.deque()  # records whose run id is still a Future
        self.archive = ParetoArchive(cfg.directions)  # the front, kept incrementally (O(front) per trial)
        self._completed: list[int] = []  # complete trial numbers in the order they were told
        self._live_hv = 0.0
        self._first_dispatch: tuple[float, float] | None = None  # (s since run() began, epoch time)
        self._startup: dict[str, float] = {}  # set-up parts (overlapped), seconds each
        self._tracking = None  # the MLflow set-up while it runs (a Future)
        self._starting: list[Future] = []  # the executor's start on a set-up thread (run())
        self._tracking_failed = False
        self._logged: dict[int, str] = {}  # child runs already in the store (found on resume)
        self.retrained: list[dict[str, Any]] = []
        self.scheduler = None
        self.oneshot = None  # search.oneshot.OneShot when the config has a ``oneshot`` block

    # -- set-up ----------------------------------------------------------------------------
    def _setup(self, resume: bool, prepared) -> None:
        """After ``search.preflight.prepare`` passed: the problem, the directory (locked first),
        the config, the study on its journal; on resume the journal is healed first and the
        MLflow side is attached here. A fresh search creates its MLflow side (the store, which
        takes seconds when new, the parent run, run.json) on a thread (``_start_tracking``)
        while the first trials are asked and dispatched; ``_tracking_ready`` joins it at the
        first result."""
        from search.preflight import open_run_dir

        cfg = self.cfg
        from search import splits

        self.space = prepared.space
        self.input_shape, self.num_classes = prepared.input_shape, prepared.num_classes
        self.split = prepared.split  # one split for every trial, retrain and resume (search.splits)
        self.cost_model = CostModel(cfg, self.space, self.input_shape, self.num_classes, prepared.task)
        # the hypervolume reference point, fixed by the problem before any training (search.problem)
        self.problem = define_problem(cfg, self.space, self.cost_model, self.input_shape, self.num_classes)
        self.out = cfg.out_dir
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.lock = open_run_dir(cfg, resume=resume, overwrite=self.overwrite)
        if self.lock.took_over:
            self.console.print(f"[yellow]took over the lock of a stopped search (pid {self.lock.took_over.get('pid', '?')})[/]")
        if resume:
            from search.journal import heal_journal

            cut = heal_journal(self.out / "study.journal")
            if cut:
                self.console.print(f"[yellow]study.journal: dropped a torn last line ({cut} bytes) left by an interrupted write[/]")
            run = prepared.run
            self.tracker = Tracker(run["tracking_uri"], cfg.experiment_name, search_name=cfg.name)
            self.parent_id = self.tracker.parent_id = run["parent_run_id"]
            splits.check_on_resume(self.tracker.client, self.parent_id, self.split)
        else:
            (self.out / "config.yaml").write_text(dump_config(cfg))
            self._tracking = self._setup_pool.submit(self._track_once_started)
            self._setup_pool.submit(_after, self._tracking, _import_plotting)  # the end's renderers, while the driver waits
        from search.journal import BufferedJournalFileBackend, IndexedJournalStorage

        # a trial's ``outcome`` (what resume needs) is in the file; this process's storage holds its state only
        self.journal = BufferedJournalFileBackend(str(self.out / "study.journal"), file_only={"outcome": _outcome_stand_in})
        storage = IndexedJournalStorage(self.journal)
        self.study = optuna.create_study(study_name=cfg.name, directions=cfg.directions, sampler=prepared.sampler,
                                         storage=storage, load_if_exists=resume)
        if resume:  # the journal replayed: only now is the parent run marked running again
            self.tracker.attach_parent(self.parent_id)
            self.tracker.batch.before_round = self.journal.sync  # a child run is stored only after its journaled outcome
            self._logged = self.tracker.child_runs()
            self._recover()

    def _track_once_started(self) -> None:
        """The MLflow set-up, begun once the executor is up: a fresh store costs seconds of CPU
        (MLflow's schema migrations) that would slow ``ray.init``, which the first dispatch
        waits for, while the store is needed only at the first result."""
        from concurrent.futures import wait

        wait(self._starting)  # (a failed start is the main thread's to raise)
        self._timed("tracking_s", self._start_tracking)

    def _start_tracking(self) -> None:
        """A fresh search's MLflow side, after every check passed (on a set-up thread): the store,
        the parent run with the config, the problem's tags and the split, then run.json."""
        from search import splits

        cfg = self.cfg
        self.tracker = Tracker(resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.experiment_name, search_name=cfg.name)
        self.parent_id = self.tracker.start_parent(cfg.name, params=_flatten(cfg.model_dump(mode="json")),
                                                   tags={**_version_tags(), **self.problem.tags()})
        self.tracker.log_artifact(self.out / "config.yaml")
        splits.record(self.tracker.client, self.parent_id, self.split)
        write_json_atomic(self.out / "problem.json", self.problem.to_json())
        self.tracker.log_artifact(self.out / "problem.json")
        write_json_atomic(self.out / RUN_FILE, {"parent_run_id": self.parent_id, "tracking_uri": self.tracker.uri,
                                                "mlflow_experiment_id": self.tracker.experiment_id, "name": cfg.name})

    def _timed(self, key: str, fn, *args):
        """Run a set-up part and keep its duration (``startup`` in the summary)."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._startup[key] = round(time.perf_counter() - t0, 2)

    def _tracking_ready(self) -> None:
        """Wait (once) for the MLflow set-up running on its thread; its errors surface here."""
        if self._tracking is not None:
            fut, self._tracking = self._tracking, None
            try:
                fut.result()
            except BaseException:
                self._tracking_failed = True
                raise
            self.tracker.batch.before_round = self.journal.sync  # a child run is stored only after its journaled outcome

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
                    o = self._outcome(attrs.get("arch", {}), attrs.get("arch_id", ""), {}, TrialResult(ft.number, TrialState.FAIL, reason="interrupted twice (driver stopped while it ran, also after a re-queue)"))
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
                entered = self._archive_add(ft.number, o)
                rid = self._logged.get(ft.number)
                if rid:
                    self.tracker.batch.known_run(ft.number, rid)
                else:  # lost with the crash
                    rid = self._log_child(ft.number, o, entered)
                self._record(TrialRecord(ft.number, o["arch"], o["arch_id"], TrialState(o["state"]), o["values"], o["metrics"], o["reason"], rid))
        for number in self._completed:  # the membership as rebuilt, on every complete run
            self.tracker.batch.set_pareto(number, number in self.archive)
        ref = self._fixed_reference()
        if ref is not None:
            self._live_hv = self.archive.hypervolume(ref)

    def _counted(self) -> int:
        """Trials that count against the budget: every asked trial except interrupted ones and
        (unless the strategy enumerates a grid) infeasible ones, which were never trained."""
        charge_infeasible = self._charges_infeasible()
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get("interrupted")
                   and (charge_infeasible or (t.user_attrs.get("outcome") or {}).get("state") != TrialState.INFEASIBLE))

    def _spec(self, number: int, arch: dict[str, Any], cost: dict[str, float]) -> TrialSpec:
        ev = self.cfg.evaluator
        return TrialSpec(number=number, space=self.space, arch=arch, data=ev.data, data_kwargs=dict(ev.data_kwargs),
                         epochs=self.cfg.budget.epochs, lr=ev.lr, optimizer=ev.optimizer, weight_decay=ev.weight_decay,
                         batch_size=ev.batch_size, seed=self.cfg.seed + number,
                         threads=max(1, int(self.cfg.resources.cpus_per_trial)),
                         accelerator="gpu" if self.cfg.resources.gpus_per_trial > 0 else "cpu",
                         scheduler=self.scheduler, objectives=self.cfg.objective_names, directions=self.cfg.directions,
                         static_metrics=cost, hardware=self.cost_model.hardware_kwargs(), save_artifacts=self.cfg.save_weights,
                         evaluate_fn=ev.function, split_seed=split_seed(self.cfg), split_sha256=self.split["val_sha256"],
                         evaluator_options=_absolute_paths(ev.options))

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
    def run(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Check everything (nothing written), join the executor, then lock and open the run
        directory and search. Ctrl-C/SIGTERM end it as KILLED with the journal flushed
        (``SearchInterrupted``); ``budget.max_failures``/``max_infeasible`` end it as FAILED
        (``SystematicFailure``/``ConstraintsExhausted``), both after the summary is written.
        With a ``oneshot`` block the supernet is trained (or reused) first and candidates are
        scored on its executor (``search.oneshot``)."""
        from concurrent.futures import ThreadPoolExecutor

        from search.executors import make_executor
        from search.preflight import prepare
        from search.signals import stop_on_signals

        started = time.perf_counter()
        self.overwrite = overwrite
        cfg = self.cfg
        # set-up parts that wait on other processes run on threads beside the checks: ray.init and
        # the workers' warm-up once the quick checks passed (they write nothing into the run
        # directory), the MLflow store once every check passed (it writes) and the executor is up
        self._setup_pool = pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="abacus-setup")
        self._starting = starting = []  # the executor's start (a Future), once begun

        def start_executor() -> None:
            if cfg.oneshot is None and not starting:
                starting.append(pool.submit(self._timed, "executor_s", make_executor, cfg))

        def executor_now():
            return starting[0].result() if starting else None

        executor = None
        with stop_on_signals() as seen:
            try:
                try:
                    prepared = self._timed("checks_s", lambda: prepare(cfg, resume=resume, overwrite=overwrite, quick_checks_passed=start_executor))
                    start_executor()
                    if cfg.address:  # joining a cluster checks that a trial fits on one of its nodes: before any write
                        executor = executor_now()
                except KeyboardInterrupt:
                    _shut_down_when_started(starting)
                    raise SystemExit(130) from None  # nothing was written yet: nothing to resume
                except BaseException:
                    _shut_down_when_started(starting)
                    raise
                try:
                    self._timed("setup_s", self._setup, resume, prepared)
                    executor = executor_now()
                    if cfg.oneshot is not None:  # train the supernet once (or per stage); candidates are then scored with its weights
                        from search.coarse_to_fine import make_oneshot

                        self._tracking_ready()
                        self.oneshot = make_oneshot(self)
                        executor = self.oneshot.start(resume)
                except BaseException:
                    _shut_down_when_started(starting)
                    if executor is not None:
                        executor.shutdown()
                    self._abandon_tracking()
                    if getattr(self, "lock", None) is not None:
                        self.lock.release()
                    raise
                try:
                    return self._search(executor, started, seen)
                finally:
                    self.lock.release()
            finally:
                pool.shutdown(wait=False)

    def _abandon_tracking(self) -> None:
        """A set-up that failed after the MLflow thread started: wait for it, close what it opened."""
        fut, self._tracking = self._tracking, None
        if fut is None:
            return
        try:
            fut.result()
        except BaseException:
            pass
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            try:
                tracker.finish_parent("FAILED")
                tracker.close()
            except Exception:
                pass

    def _search(self, executor, started: float, seen: dict[str, str]) -> dict[str, Any]:
        from search.adapter import suggest_arch
        from search.failures import ConstraintsExhausted, FailureStreak, SystematicFailure
        from search.signals import SearchInterrupted

        cfg = self.cfg
        self.scheduler = self._make_scheduler()
        self._restore_scheduler()
        self.failures = FailureStreak(cfg.budget.max_failures)
        pending: dict[int, tuple[optuna.trial.Trial, dict, str, dict]] = {}
        asked = self._counted()
        infeasible_run = 0
        self.budget = budget = TrialBudget(cfg.budget)
        progress, task = self._progress(done=asked)
        self.status = "FAILED"
        stop: BaseException | None = None
        try:
            while budget.may_ask(asked) or executor.in_flight:
                while budget.may_ask(asked) and executor.in_flight < getattr(executor, "capacity", cfg.workers):
                    trial = self.study.ask()
                    asked += 1
                    arch = suggest_arch(trial, self.space, cfg.fixed)
                    aid = self.space.arch_id(arch)
                    trial.set_user_attr("arch", arch)
                    trial.set_user_attr("arch_id", aid)
                    try:
                        cost, violations = self.cost_model(arch)
                    except Exception as exc:  # a cost-model failure is this candidate's failure
                        self._finish(trial, arch, aid, {}, TrialResult(trial.number, TrialState.FAIL, reason=f"cost model: {type(exc).__name__}: {exc}"))
                        self._advance(progress, task)
                        continue
                    if self.cost_model.constraints:
                        trial.set_user_attr("constraints", self.cost_model.violation_amounts(cost))
                    if violations:
                        self._finish(trial, arch, aid, cost, TrialResult(trial.number, TrialState.INFEASIBLE, reason="; ".join(violations)))
                        if self._charges_infeasible():
                            self._advance(progress, task)
                        else:  # never trained: not charged to the trial budget
                            asked -= 1
                            infeasible_run += 1
                            if infeasible_run >= cfg.budget.max_infeasible:
                                raise ConstraintsExhausted(infeasible_run, violations[0])
                        continue
                    infeasible_run = 0
                    pending[trial.number] = (trial, arch, aid, cost)
                    self.journal.flush(sync=False)  # the running trial is in the file: a crash from here re-queues it
                    executor.submit(self._spec(trial.number, arch, cost))
                    if self._first_dispatch is None:
                        self._first_dispatch = (time.perf_counter() - started, time.time())
                if executor.in_flight:
                    result = executor.wait_one()
                    trial, arch, aid, cost = pending.pop(result.number)
                    self._finish(trial, arch, aid, cost, result)
                    self._advance(progress, task)
            if cfg.retrain is not None:
                self._tracking_ready()
                self.retrained = retrain_front(self, self.oneshot.retrain_executor() if self.oneshot else executor)
            self.status = "FINISHED"
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP through search.signals
            seen.setdefault("name", "SIGINT" if type(exc) is KeyboardInterrupt else str(exc) or "a signal")
            self.status, stop = "KILLED", exc
        except SystemExit as exc:  # Lightning ends a trial's fit this way after a Ctrl-C
            if not seen and exc.code in (0, None):
                raise
            seen.setdefault("name", "SIGINT")
            self.status, stop = "KILLED", exc
        except (SystematicFailure, ConstraintsExhausted) as exc:
            self.status, stop = "FAILED", exc
        finally:
            self._last_result_at = time.time()  # the end of the run starts here (summary ``last_result_at``)
            self.journal.flush()
            stopping = _shut_down_beside(executor)  # Ray's shutdown (~1.5 s) needs nothing of what follows
            try:
                if progress is not None:
                    progress.stop()
                if self._tracking_failed:  # no MLflow side to conclude in: its error goes on
                    self.journal.close()
                else:
                    summary = self._conclude(time.perf_counter() - started)
                    self.tracker.finish_parent(self.status)
                    self.tracker.close()
                    self.journal.close()
            finally:
                stopping.result()  # the process never ends with its Ray half shut down
        if self.status == "KILLED":
            raise SearchInterrupted(str(self.out), seen.get("name", "a signal")) from None
        if stop is not None:
            raise stop
        return summary

    def _teaches_sampler(self, trial: optuna.trial.Trial) -> bool:
        """An infeasible candidate goes to the sampler only when the sampler has our
        ``constraints_func`` and a constraint value says it is infeasible (a design the cost
        model finds unbuildable without violating a constraint is told FAIL, as before)."""
        if not self.cfg.constraints or self.cfg.strategy.name not in CONSTRAINED_STRATEGIES:
            return False
        return any(v > 0 for v in trial.user_attrs.get("constraints") or [])

    def _charges_infeasible(self) -> bool:
        """Finite strategies enumerate points (the budget is the grid): each one is charged."""
        from search.config import FINITE_STRATEGIES

        return self.cfg.strategy.name in FINITE_STRATEGIES

    def _outcome(self, arch: dict, aid: str, cost: dict, result: TrialResult) -> dict[str, Any]:
        """Everything about a finished trial, as JSON, kept in the journal before anything else
        is written: a crash after this point is finished from it on resume."""
        cfg = self.cfg
        metrics = {**result.metrics, **cost, **result.cost}
        state, reason = result.state, result.reason
        values: dict[str, float] = {}
        if state == TrialState.COMPLETE:
            missing = [n for n in cfg.objective_names if n not in metrics]
            if missing:
                state, reason = TrialState.FAIL, f"objective(s) not produced: {', '.join(missing)}"
            else:
                values = {n: float(metrics[n]) for n in cfg.objective_names}
                if any(v != v for v in values.values()):
                    state, reason = TrialState.FAIL, "NaN objective value"
        tags = {"arch_id": aid, "node": result.node or "", "cost_source": "measured" if result.cost else "static", **result.tags}
        if result.score_source:
            tags["score_source"] = result.score_source
        if state == TrialState.PRUNED:
            tags["pruned_at_epoch"] = str(int(result.metrics.get("epochs", len(result.history))))
        if metrics:
            metrics["worker_time_s"] = result.worker_time_s
        end_ms = int(time.time() * 1000)  # the run's real span: it is logged after the trial ended
        return {"start_ms": end_ms - int(1000 * result.worker_time_s), "end_ms": end_ms,
                "arch": arch, "arch_id": aid, "state": TrialState(state), "values": values, "reason": reason[:2000],
                "metrics": {k: v for k, v in metrics.items() if v == v}, "history": result.history, "tags": tags,
                "number": result.number}

    def _finish(self, trial: optuna.trial.Trial, arch: dict, aid: str, cost: dict, result: TrialResult) -> None:
        self._tracking_ready()
        outcome = self._outcome(arch, aid, cost, result)
        if result.artifacts:
            from search.export import unpack_trial_artifacts

            unpack_trial_artifacts(result.artifacts, self.out / "trials" / str(trial.number))
        trial.set_user_attr("outcome", outcome)  # on disk with the tell, before anything else is written
        self._commit(trial, outcome)
        if outcome["state"] == TrialState.FAIL and outcome["reason"]:
            self.console.print(f"[yellow]trial {trial.number} failed:[/] {outcome['reason'].splitlines()[0][:200]}")
        self.failures.record(outcome["state"], outcome["reason"])

    def _archive_add(self, number: int, o: dict[str, Any]) -> bool | None:
        """Front upkeep for a told trial: O(front). None for a trial that is not complete; else
        whether it entered the front (the runs it pushed out get ``pareto=false`` queued)."""
        if o["state"] != "complete":
            return None
        change = self.archive.add(number, [o["values"][n] for n in self.cfg.objective_names])
        self._completed.append(number)
        for k in change.evicted:
            self.tracker.batch.set_pareto(k, False)
        return change.entered

    def _commit(self, trial: optuna.trial.Trial, o: dict[str, Any]) -> None:
        """Front upkeep, ``tell``, one journal sync (outcome and result together), then the MLflow
        child run (unless one was logged before a crash) and the record."""
        cfg = self.cfg
        entered = self._archive_add(trial.number, o)
        state = TrialState(o["state"])
        if state == TrialState.COMPLETE:
            self.study.tell(trial, [o["values"][n] for n in cfg.objective_names])
            if self.scheduler is not None:
                from search.schedulers import call

                call(self.scheduler, "finish", trial.number, o["values"][cfg.objective_names[0]])
        elif state == TrialState.PRUNED:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif state == TrialState.INFEASIBLE and self._teaches_sampler(trial):
            # told COMPLETE so the sampler's constraints_func sees it; these samplers rank an
            # infeasible trial by its violation only, never by these stand-in values
            self.study.tell(trial, [float(o["metrics"].get(n, 0.0)) for n in cfg.objective_names])
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # the outcome and the tell in the file (a driver crash before it re-queues the trial); the
        # fsync runs on the MLflow writer before this trial's child run is stored (journal.sync)
        self.journal.flush(sync=False)
        rid = self._logged.get(trial.number)
        if rid:
            self.tracker.batch.known_run(trial.number, rid)
            if entered is not None:
                self.tracker.batch.set_pareto(trial.number, entered)
        else:
            rid = self._log_child(trial.number, o, entered)
        self._record(TrialRecord(trial.number, o["arch"], o["arch_id"], state, o["values"], o["metrics"], o["reason"], rid))
        if state == TrialState.COMPLETE:
            ref = self._fixed_reference()
            if ref is not None:  # live curve when the reference point is known up front
                if entered:  # the volume changes only when the front does
                    self._live_hv = self.archive.hypervolume(ref)
                self.tracker.batch.log_parent_metric("hypervolume", self._live_hv, trial.number)

    def _fixed_reference(self) -> np.ndarray | None:
        """The problem's reference point (known before training, so the curve is live)."""
        return self.problem.reference

    def _restore_scheduler(self) -> None:
        """On resume: the early-stopping rungs as they were, rebuilt from the journaled per-epoch
        histories of finished trials (in trial order), so promotions continue as if never stopped."""
        if self.scheduler is None:
            return
        from search.schedulers import call, rung_values

        import evaluators

        from search.worker import STATIC_MODEL_METRICS

        names = self.cfg.objective_names
        data_task = evaluators.task_of_data(self.cfg.evaluator.data)
        minimize = (data_task.primary,) if data_task.mode == "min" else ()
        for ft in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            o = ft.user_attrs.get("outcome")
            if not o or o.get("state") not in (TrialState.COMPLETE, TrialState.PRUNED) or not o.get("history"):
                continue
            static = {k: v for k, v in o.get("metrics", {}).items() if k in COST_KEYS or k in STATIC_MODEL_METRICS}
            value = o["values"].get(names[0]) if o["state"] == TrialState.COMPLETE else None
            call(self.scheduler, "restore", o.get("number", ft.number), rung_values(names, static, o["history"], minimize),
                 o["state"] == TrialState.PRUNED, value)

    def _log_child(self, number: int, o: dict[str, Any], on_front: bool | None) -> Future:
        """Queue the child run (written in a batch; a Future of its run id), with the trial's
        weights as its artifacts and its front membership as the ``pareto`` tag."""
        from search.tracking_batch import child_run

        tags = dict(o["tags"])
        if on_front is not None:
            tags["pareto"] = "true" if on_front else "false"
        trial_dir = self.out / "trials" / str(number)  # weights + arch.json, unpacked by _finish
        weights = self.cfg.save_weights and trial_dir.is_dir()  # (no stat per trial when nothing is saved)
        run = child_run(number, "trial", o["arch"], tags, o["metrics"], o["history"], o["state"], o["reason"],
                        self.parent_id, trial_dir if weights else None,
                        search=self.cfg.name, start_ms=o.get("start_ms"), end_ms=o.get("end_ms"))
        return self.tracker.batch.add_run(run)

    # -- progress --------------------------------------------------------------------------
    def _progress(self, done: int = 0):
        """A live bar, a line per finished trial, or nothing (``search/progress.py``)."""
        from search.progress import make_progress

        return make_progress(self.show_progress, self.console, self.cfg.name, self.cfg.budget.trials, done), None

    def _advance(self, progress, task) -> None:
        if progress is None:
            return
        front = len(self.archive)
        last = next(reversed(self.records.values()))  # each trial is recorded once, when it finishes
        progress.trial_done(last, self._counts(), front, self.cfg.objective_names)

    # -- the end ---------------------------------------------------------------------------
    def _record(self, rec: TrialRecord) -> None:
        rec.metrics = pack_metrics(rec.metrics)  # kept for the whole search: compact (~1 KiB less a trial)
        old = self.records.get(rec.number)
        if old is not None:
            self._tally[old.state] -= 1
        self.records[rec.number] = rec
        self._tally[rec.state] += 1
        if isinstance(rec.run_id, Future):
            self._unresolved.append(rec)
        self._release_written()

    def _release_written(self) -> None:
        """A written child run's Future (a lock and lists, ~1 KiB) is swapped for its run id, so
        only the runs still queued hold one: the records stay small over 10,000 trials."""
        while self._unresolved:
            run_id = self._unresolved[0].run_id
            if isinstance(run_id, Future):
                if not run_id.done():
                    return
                if run_id.exception() is None:
                    self._unresolved[0].run_id = run_id.result()
            self._unresolved.popleft()

    def _counts(self) -> dict[str, int]:
        """Kept as records arrive (the progress line asks after every trial: no O(n) scan)."""
        t = self._tally
        return {"complete": t[TrialState.COMPLETE], "failed": t[TrialState.FAIL], "pruned": t[TrialState.PRUNED],
                "infeasible": t[TrialState.INFEASIBLE]}

    def _front(self) -> tuple[list[TrialRecord], np.ndarray, list[TrialRecord]]:
        """(front records, values of all complete trials, complete records), by trial number."""
        complete = sorted((r for r in self.records.values() if r.state == TrialState.COMPLETE), key=lambda r: r.number)
        if not complete:
            return [], np.zeros((0, len(self.cfg.objectives))), []
        values = np.array([[r.values[n] for n in self.cfg.objective_names] for r in complete])
        return [r for r in complete if r.number in self.archive], values, complete

    def _conclude(self, wall_s: float) -> dict[str, Any]:
        self._tracking_ready()
        started = time.perf_counter()
        cfg = self.cfg
        names, dirs = cfg.objective_names, cfg.directions
        tracking_wait = self.tracker.flush()  # every child run and tag is in the store before the summary names them
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
            ref = self.problem.reference  # the live ``hypervolume`` curve used the same point
            hv = self.archive.hypervolume(ref)  # the final front only
        front_rows = [{"trial": r.number, "arch_id": r.arch_id, "arch": r.arch, "values": r.values, "run_id": r.run_id}
                      for r in sorted(front, key=lambda r: r.values[names[0]])]
        if cfg.retrain is not None:
            attach_test_values(front_rows, self.retrained, names)
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
            "reference_point": self.problem.reference_point,
            "problem": self.problem.key,
            "wall_time_s": round(wall_s, 2),
            "last_result_at": round(getattr(self, "_last_result_at", time.time()), 3),  # epoch s: the loop's end (the benchmark times the exit from it)
            "tracking_wait_s": round(tracking_wait, 3),  # the wait for queued MLflow writes at the end
            **self._start_figures(),
            "retrained": self.retrained,
            "selected_on": "search",  # the front is chosen on the search's (validation) values, never on test values
            "selection_note": selection_note(cfg, front_rows),
            "split": getattr(self, "split", None),
            "stopped_by": getattr(getattr(self, "budget", None), "stopped_by", ""),
            "failures": [{"trial": r.number, "state": r.state, "reason": r.reason} for r in sorted(self.records.values(), key=lambda r: r.number) if r.state != TrialState.COMPLETE],
        }
        if complete:
            on_front = np.array([r.number in self.archive for r in complete])
            write_pareto_csv(self.out / "pareto.csv", front_rows, names)
            plot_pareto_png(self.out / "pareto.png", values, on_front, names, dirs, f"{cfg.name}: {len(front)} on the front of {len(complete)}")
            from search.html_report import hover_text, write_pareto_html

            write_pareto_html(self.out / "pareto.html", values, on_front, names, dirs,
                              [hover_text(r.number, r.arch_id, r.arch, r.values) for r in complete],
                              f"{cfg.name}: {len(front)} on the front of {len(complete)}<br><sup>hypervolume {hv:.6g} on the reference point "
                              f"of problem {self.problem.key}: " + ", ".join(f"{n}={v:.6g}" for n, v in self.problem.reference_point.items()) + "</sup>",
                              reference=ref)
            for name in ("pareto.csv", "pareto.png", "pareto.html"):
                self.tracker.log_artifact(self.out / name)
            self.tracker.log_front_table(front_rows, names)
            self.tracker.log_parent_metrics({"front_size": len(front), "hypervolume_final": hv, **{f"n_{k}": v for k, v in counts.items()}})
        self.tracker.flush()
        # the whole end of the run (wait, curve, plots, artifacts); only summary.json's own upload is after it
        summary["conclude_s"] = round(time.perf_counter() - started, 3)
        write_json_atomic(self.out / "summary.json", summary)
        self.tracker.log_artifact(self.out / "summary.json")
        for key, value in cfg.evaluator.options.items():  # what the evaluator read (a DeFeat teacher) goes with the search
            path = Path(value) if isinstance(value, str) else None
            if path is not None and path.is_dir():
                self.tracker.client.log_artifacts(self.parent_id, str(path), f"evaluator_inputs/{key}")
            elif path is not None and path.is_file():
                self.tracker.log_artifact(path, f"evaluator_inputs/{key}")
        return summary

    def _start_figures(self) -> dict[str, float]:
        """How long the start took: from ``run()`` and from the process's start to the first dispatch."""
        if self._first_dispatch is None:
            return {}
        import psutil

        since_run, at = self._first_dispatch
        return {"first_dispatch_s": round(since_run, 2), "process_first_dispatch_s": round(at - psutil.Process().create_time(), 2),
                "startup": dict(self._startup)}

    def print_front(self, summary: dict[str, Any]) -> None:
        from rich.console import Console

        out = Console()
        out.print(front_table(summary["front"], self.cfg.objective_names,
                              f"Pareto front of {summary['experiment']} ({len(summary['front'])} of {summary['complete']} complete trials)",
                              caption=summary.get("selection_note", ""),
                              search=summary["experiment"] if self.cfg.save_weights else None))
        ref = summary["reference_point"]
        out.print(f"hypervolume {summary['hypervolume']:.6g} (reference point {ref}); complete {summary['complete']}, failed {summary['failed']}, "
                  f"infeasible {summary['infeasible']}, pruned {summary['pruned']}; wall time {summary['wall_time_s']:.1f} s")
        out.print(f"summary: {self.out / 'summary.json'}   MLflow: experiment {summary['mlflow_experiment_id']}, parent run {summary['parent_run_id']} ({summary['tracking_uri']})")
        from search.ui import ui_url

        out.print(f"in MLflow's UI: `abacus ui`, then {ui_url(5000, summary['mlflow_experiment_id'])}")


def _after(first: Future, fn) -> None:
    """``fn()`` once ``first`` is done (whatever its outcome: that is the main thread's to raise)."""
    from concurrent.futures import wait

    wait([first])
    fn()


def _import_plotting() -> None:
    """What the end of the run draws the front with (``pareto.png``: matplotlib; ``pareto.html``:
    plotly, which loads each property's validator on first use): ~1.5 s cold on this machine,
    loaded on a set-up thread while the driver waits for its first results rather than at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import plotly.graph_objects as go

    go.Figure(go.Scatter(x=[0.0], y=[0.0], mode="markers", hovertext=[""]))


def _shut_down_beside(executor) -> Future:
    """``executor.shutdown()`` on a thread of its own, so the end of the run (the last MLflow
    writes, the front's plots, the summary) goes on meanwhile; the caller waits on the Future."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abacus-stop")
    try:
        return pool.submit(executor.shutdown)
    finally:
        pool.shutdown(wait=False)


def _outcome_stand_in(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the driver's Optuna storage keeps of a trial's journaled ``outcome`` (its state, which
    the budget count reads); the full value is in the journal file for resume."""
    return {"state": outcome["state"]}


def _shut_down_when_started(starting: list[Future]) -> None:
    """The executor being started on a set-up thread, shut down once it is up (a failed start: nothing)."""
    if not starting:
        return
    try:
        executor = starting[0].result()
    except BaseException:
        return
    executor.shutdown()


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
