"""One-shot search: train the space's supernet once, then score candidates with its weights.

The engine stays the same loop (ask -> cost -> constraints -> executor -> tell -> MLflow); a
``oneshot`` config block swaps two things in:

1. before the loop, :meth:`OneShot.start` trains the supernet (``evaluators.supernet``) in the
   driver, or data-parallel through Ray Train when more than one training worker or a cluster
   address is configured. The training is its own MLflow run (``abacus.role: supernet``, child
   of the search's run) with per-epoch curves and the supernet files as artifacts. It is
   resumable: Lightning / Ray Train checkpoints live in ``<out>/supernet``, and a finished
   supernet is reused as it is;
2. the executor becomes :class:`InheritedExecutor`: candidates (already costed, constraint
   violators already rejected by the engine) are scored in batches of ``candidates_per_task``
   on long-lived Ray actors (:class:`SupernetScorer`, one per worker), each holding the
   supernet and its recalibration / validation tensors for the whole search; a candidate's
   score is its path's accuracy after batch-norm recalibration, with the ``params``/``macs`` of
   its stand-alone network. Child runs carry ``score_source: inherited``; the ``retrain`` block
   trains the front from scratch on the ordinary executor (``score_source: trained``).

Reusable pieces (for other search modes built on one-shot scoring): :class:`OneShot` ``.start``
(train or reuse the supernet, its MLflow run), :func:`supernet_payload` + :class:`SupernetScorer`
(score any saved supernet of any registered space on any classification data module), and
:class:`InheritedExecutor` (the batched actor pool, constructible from plain options).

Dimensions the supernet does not switch (training recipes) are fixed for the search at the
supernet's values, so every candidate is exactly a path of the trained supernet.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

from search.errors import ConfigError
from search.ray_start import start_ray
from search.worker import TrialResult

INHERITED_METRICS = ("val_accuracy", "best_val_accuracy", "val_loss", "params", "macs", "wall_time_s")
SUPERNET_DIR = "supernet"
RUN_FILE = "mlflow_run.json"


def check_oneshot(cfg: Any, space: Any) -> None:
    """Config checks of the ``oneshot`` block (called by ``search.config.check_names``)."""
    import supernets
    from search.config import COST_FIELDS

    oc = cfg.oneshot
    if not supernets.has_supernet(space):
        raise ConfigError("oneshot", f"a space with a supernet ({', '.join(supernets.list_supernets())})", cfg.space)
    if oc.sampling not in supernets.list_path_samplers():
        raise ConfigError("oneshot.sampling", f"one of {', '.join(supernets.list_path_samplers())}", oc.sampling)
    known = inherited_metrics(cfg) + COST_FIELDS
    for i, o in enumerate(cfg.objectives):
        if o.name not in known:
            raise ConfigError(f"objectives.{i}.name", f"a metric known with inherited weights ({', '.join(known)})", o.name)
    if cfg.scheduler.name != "none":
        raise ConfigError("scheduler.name", "'none' with oneshot (inherited scores have no epochs to stop early)", cfg.scheduler.name)
    if cfg.evaluator.function is not None:
        raise ConfigError("evaluator.function", "no custom evaluation with oneshot (candidates are scored by the supernet)", cfg.evaluator.function)
    if cfg.fixed.get("manidp.enabled"):
        raise ConfigError("fixed.manidp.enabled", "False with oneshot (the supernet has no dynamic gates)", True)


def inherited_metrics(cfg: Any) -> tuple[str, ...]:
    """Metrics a candidate gets with inherited weights, by the task of the config's data."""
    import evaluators

    task = evaluators.task_of_data(cfg.evaluator.data).name
    if task == "classification":
        return INHERITED_METRICS
    from evaluators.supernet_image import inherited_metrics as image_metrics

    return image_metrics(task)


class SupernetScorer:
    """Scores candidates with one supernet's inherited weights: the supernet, its fixed
    recalibration and validation batches are loaded once (at construction) and reused for every
    batch of candidates. The executor runs one per worker as a long-lived Ray actor (nothing is
    re-shipped or re-built per task); :func:`score_candidates` uses one per process.

    Generic over the registered supernets and tasks (classification: accuracy after batch-norm
    recalibration; image-to-image: ``evaluators.supernet_image``'s task metrics): ``payload`` is
    :func:`supernet_payload` of a saved supernet (``evaluators.supernet.save_supernet``) and
    ``data`` names the data module (``data``, ``data_kwargs``, ``batch_size``, ``seed`` = the
    split and recalibration seed, ``recalibration_batches``, ``options`` = the task options that
    decide how a candidate is measured). Each result carries the metrics of
    ``evaluators.supernet.score_inherited`` plus the path's ``params``/``macs`` (as a trained
    candidate's evaluation reports them), tagged ``score_source: inherited``."""

    def __init__(self, payload: dict[str, Any], data: dict[str, Any], threads: int = 1) -> None:
        import torch

        import evaluators
        from evaluators.supernet import fixed_batches, score_inherited
        from spaces import SearchSpace
        from supernets import build_supernet

        self.threads = max(1, int(threads))
        torch.set_num_threads(self.threads)  # deliberate: one thread per worker, the workers fill the cores
        self.key = scorer_key(payload, data)
        meta = json.loads(payload["meta"])
        space = SearchSpace.from_dict(meta["space"])
        self.supernet = build_supernet(space, input_shape=tuple(meta["task"]["input_shape"]), num_classes=int(meta["task"].get("num_classes", 0)),
                                       fixed=meta["fixed"])
        self.supernet.load_state_dict(torch.load(io.BytesIO(payload["weights"]), weights_only=True, map_location="cpu"))
        self.supernet.eval()
        dm = evaluators.get_datamodule(data["data"], seed=data["seed"], batch_size=data["batch_size"], **data["data_kwargs"])
        self.task = getattr(dm, "task", "classification")
        if self.task == "classification":
            self.recal, self.val = fixed_batches(dm, data["recalibration_batches"], seed=data["seed"])
            self._score = score_inherited
        else:  # image-to-image tasks: the task's own metrics and the model size (evaluators.supernet_image)
            from evaluators.supernet_image import image_batches, metric_module, score_image

            self.recal, self.val = image_batches(dm, data["recalibration_batches"], seed=data["seed"])
            self._score = functools.partial(score_image, scorer=metric_module(self.task, dm, data.get("options")),
                                            primary=evaluators.get_task(self.task).primary)
        self.node = _node()

    def score(self, items: list[tuple[int, dict[str, Any]]]) -> list[TrialResult]:
        """Inherited-weight results of ``items`` = [(trial number, arch)], in order; a candidate
        that raises is a failed result with its reason (the batch goes on)."""
        node = self.node
        out = []
        for number, arch in items:
            start = time.perf_counter()
            try:
                metrics = self._score(self.supernet, arch, self.recal, self.val)
                if self.task == "classification":  # image scores already carry the sub-network's size
                    metrics.update(self.supernet.path_size(arch))
                took = time.perf_counter() - start
                out.append(TrialResult(number, "complete", {**metrics, "wall_time_s": took}, node=node, worker_time_s=took, score_source="inherited"))
            except Exception as exc:  # one broken candidate is data, not a crash
                out.append(TrialResult(number, "fail", reason=f"{type(exc).__name__}: {exc}"[:500],
                                       node=node, worker_time_s=time.perf_counter() - start, score_source="inherited"))
        return out

    def ping(self) -> str:
        return self.key


def _node() -> str:
    from search.worker import _node_id

    return _node_id()


def scorer_key(payload: dict[str, Any], data: dict[str, Any]) -> str:
    return f"{payload['key']}:{json.dumps(data, sort_keys=True, default=str)}"


def supernet_payload(out: Path) -> dict[str, Any]:
    """The saved supernet of ``out`` (``supernet.pt`` + ``supernet.json``) as plain data that
    ships to workers, with a content key (a scorer is reused while the key is the same)."""
    from evaluators.supernet import META_FILE, SUPERNET_FILE

    weights = (Path(out) / SUPERNET_FILE).read_bytes()
    meta = (Path(out) / META_FILE).read_text()
    return {"key": hashlib.sha256(weights).hexdigest()[:16], "weights": weights, "meta": meta}


_payload = supernet_payload  # earlier name
_SCORERS: dict[str, SupernetScorer] = {}


def score_candidates(payload: dict[str, Any], data: dict[str, Any], items: list[tuple[int, dict[str, Any]]], threads: int = 1) -> list[TrialResult]:
    """Inherited-weight scores of ``items`` = [(trial number, arch)] in this process (a Ray task
    or a local call), with one :class:`SupernetScorer` per process kept between calls."""
    key = scorer_key(payload, data)
    scorer = _SCORERS.get(key)
    if scorer is None:
        try:
            scorer = SupernetScorer(payload, data, threads)
        except Exception as exc:  # the whole batch fails with the reason; the search goes on
            return [TrialResult(n, "fail", reason=f"supernet: {type(exc).__name__}: {exc}"[:500], node=_node(), score_source="inherited")
                    for n, _ in items]
        _SCORERS.clear()
        _SCORERS[key] = scorer
    return scorer.score(items)


class InheritedExecutor:
    """Executor interface of ``search.executors`` (``submit``, ``wait_one``, ``in_flight``,
    ``shutdown``) over batched inherited-weight scoring.

    With Ray, ``workers`` long-lived :class:`SupernetScorer` actors each hold the supernet and
    the cached recalibration / validation tensors; candidates go to them in batches of
    ``candidates_per_task``, two batches in flight per actor so an actor never waits while the
    driver tells results. ``capacity`` tells the engine how many candidates to keep in flight.
    ``local=True`` scores in this process. Use :meth:`from_config` in a search; the constructor
    takes plain options so other search modes (and benchmarks) can use it on any saved supernet.
    ``submit`` takes anything with ``number`` and ``arch`` (a ``TrialSpec``)."""

    PIPELINE = 2  # batches in flight per actor

    def __init__(self, supernet_dir: Path, data: dict[str, Any], *, workers: int = 1, candidates_per_task: int = 32,
                 threads: int = 1, local: bool = False, address: str | None = None, cpus_per_worker: float = 1.0,
                 max_retries: int = 0, cfg: Any = None) -> None:
        self.cfg = cfg
        self.batch = int(candidates_per_task)
        self.workers = max(1, int(workers))
        self.capacity = (self.PIPELINE + 1) * self.batch * self.workers
        self.on_shutdown = None  # called with this executor before it shuts down (the engine logs its speed)
        self.data = dict(data)
        self.threads = max(1, int(threads))
        payload = supernet_payload(supernet_dir)
        self._queue: list[Any] = []
        self._ready: list[TrialResult] = []
        self._running: dict[Any, tuple[int, Any, list[int]]] = {}  # ref -> (actor index, actor, trial numbers)
        self._local = bool(local)
        self._owns_ray = False
        self._retrain = None
        self.scored = 0  # results handed to the engine, and the time from the first submit to the last
        self.first_submit: float | None = None
        self.last_result: float | None = None
        if self._local:
            self._scorer = SupernetScorer(payload, self.data, self.threads)
            return
        import ray

        self._ray = ray
        self._owns_ray = start_ray(address, num_cpus=int(round(self.workers * cpus_per_worker)))
        self._payload_ref = ray.put(payload)  # kept alive: a replaced actor is built from it
        self._actor_cls = ray.remote(SupernetScorer).options(num_cpus=cpus_per_worker)
        self._restarts_left = int(max_retries) * self.workers  # actors replaced after a crash (Ray's own restart warns on object-store arguments)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        self._load = [0] * self.workers

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._payload_ref, self.data, self.threads)

    @classmethod
    def from_config(cls, cfg: Any, supernet_dir: Path) -> "InheritedExecutor":
        """The executor a search's config asks for (``oneshot``, ``evaluator``, ``workers``, ``resources``)."""
        ev = cfg.evaluator
        from search.engine import _absolute_paths

        data = {"data": ev.data, "data_kwargs": dict(ev.data_kwargs), "batch_size": ev.batch_size, "seed": cfg.seed,
                "recalibration_batches": int(cfg.oneshot.recalibration_batches), "options": _absolute_paths(ev.options)}
        return cls(supernet_dir, data, workers=cfg.workers, candidates_per_task=cfg.oneshot.candidates_per_task,
                   threads=max(1, int(cfg.resources.cpus_per_trial)), local=cfg.executor == "local", address=cfg.address,
                   cpus_per_worker=cfg.resources.cpus_per_trial, max_retries=cfg.budget.max_retries, cfg=cfg)

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(len(n) for _, _, n in self._running.values()) + len(self._ready)

    def submit(self, spec: Any) -> None:
        if self.first_submit is None:
            self.first_submit = time.perf_counter()
        self._queue.append(spec)

    @property
    def candidates_per_s(self) -> float | None:
        if not self.scored or self.first_submit is None or self.last_result is None:
            return None
        return self.scored / max(self.last_result - self.first_submit, 1e-9)

    def _launch(self) -> None:
        while self._queue:
            chunk, rest = self._queue[: self.batch], self._queue[self.batch:]
            items = [(s.number, s.arch) for s in chunk]
            if self._local:
                self._queue = rest
                self._ready.extend(self._scorer.score(items))
                return
            i = min(range(self.workers), key=self._load.__getitem__)
            if self._load[i] >= self.PIPELINE:
                return
            self._queue = rest
            ref = self._actors[i].score.remote(items)
            self._load[i] += 1
            self._running[ref] = (i, self._actors[i], [n for n, _ in items])

    def wait_one(self) -> TrialResult:
        while not self._ready:
            self._launch()
            if self._ready or not self._running:
                continue
            ready, _ = self._ray.wait(list(self._running), num_returns=1)
            ref = ready[0]
            i, actor, numbers = self._running.pop(ref)
            self._load[i] -= 1
            try:
                self._ready.extend(self._ray.get(ref))
            except Exception as exc:  # the actor died (worker lost): its batch fails, a new actor takes its place
                reason = f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._ready.extend(TrialResult(n, "fail", reason=reason, score_source="inherited") for n in numbers)
                if isinstance(exc, self._ray.exceptions.RayActorError) and self._restarts_left > 0 and self._actors[i] is actor:
                    self._restarts_left -= 1
                    self._ray.kill(self._actors[i])
                    self._actors[i] = self._new_actor()
            self._launch()  # keep the actors busy while the engine tells these results
        self.scored += 1
        self.last_result = time.perf_counter()
        return self._ready.pop(0)

    def _release_actors(self) -> None:
        """Kill the scorer actors (they hold their CPUs while alive)."""
        if self._local:
            return
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._load = [], []
        self._running.clear()

    def retrain_executor(self):
        """The ordinary executor (build + train from scratch) for the ``retrain`` block; the
        scorer actors are released first so the retraining tasks get their CPUs."""
        if self._retrain is None:
            from search.executors import make_executor

            self._release_actors()
            self._retrain = make_executor(self.cfg)
        return self._retrain

    def shutdown(self) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown(self)
        if self._retrain is not None:
            self._retrain.shutdown()
        self._release_actors()
        if not self._local and self._owns_ray:
            self._ray.shutdown()
        self._queue.clear()


class OneShot:
    """The engine's one-shot mode: supernet training (own MLflow run) and the scoring executor."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.cfg = engine.cfg
        self.dir = Path(engine.out) / SUPERNET_DIR
        self.executor: InheritedExecutor | None = None
        self.run_id: str | None = None

    # -- training ---------------------------------------------------------------------------
    def _build(self):
        import torch

        import supernets

        e = self.engine
        torch.manual_seed(int(self.cfg.seed))  # initial weights from the search's seed, not from what ran before in this process
        return supernets.build_supernet(e.space, input_shape=e.input_shape, num_classes=e.num_classes, fixed=self.cfg.fixed)

    def _mlflow_run(self, sn: Any) -> str:
        """The supernet's MLflow run (created once; found again on resume)."""
        path = self.dir / RUN_FILE
        tracker = self.engine.tracker
        if path.is_file():
            rid = json.loads(path.read_text())["run_id"]
            tracker.client.update_run(rid, status="RUNNING")
            return rid
        oc = self.cfg.oneshot
        run = tracker.client.create_run(tracker.experiment_id, run_name="supernet", tags={
            "mlflow.parentRunId": self.engine.parent_id, "abacus.role": "supernet", "sampling": oc.sampling})
        rid = run.info.run_id
        params = {"sampling": oc.sampling, "epochs": oc.epochs, "recalibration_batches": oc.recalibration_batches,
                  "choice_layers": ",".join(f"{l.label}:{l.m}" for l in sn.choice_layers()), "parameters": sum(p.numel() for p in sn.parameters()),
                  **{f"fixed.{k}": v for k, v in sn.fixed.items()}, **{f"sampler_options.{k}": v for k, v in oc.sampler_options.items()}}
        tracker._log(rid, params=params)
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_id": rid}))
        return rid

    def _train(self, sn: Any) -> dict[str, Any]:
        from evaluators.supernet import save_supernet, train_supernet, train_supernet_distributed

        import evaluators

        cfg, oc, e = self.cfg, self.cfg.oneshot, self.engine
        lr = oc.lr or cfg.evaluator.lr
        replicas = oc.workers or cfg.workers
        tracker = e.tracker
        rid = self.run_id

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracker.submit(tracker._log, rid, None, metrics, epoch)

        if cfg.executor != "local" and (replicas > 1 or cfg.address):
            start_ray(cfg.address, num_cpus=max(replicas, int(round(cfg.workers * cfg.resources.cpus_per_trial))))
            res = train_supernet_distributed(space=e.space, fixed=sn.fixed, data=cfg.evaluator.data, seed=cfg.seed,
                                             data_kwargs={"seed": cfg.seed, "batch_size": cfg.evaluator.batch_size, **cfg.evaluator.data_kwargs},
                                             workers=replicas, out_dir=self.dir, sampling=oc.sampling, epochs=oc.epochs, lr=lr,
                                             optimizer=cfg.evaluator.optimizer, weight_decay=cfg.evaluator.weight_decay,
                                             sampler_options=oc.sampler_options, threads=max(1, int(cfg.resources.cpus_per_trial)))
            for row in res["history"]:
                metrics = {k: v for k, v in row.items() if k not in ("epoch", "_timestamp", "_time_this_iter_s", "_training_iteration")
                           and not k.startswith("time_") and k not in ("timestamp", "training_iteration", "iterations_since_restore")}
                log_epoch(int(row.get("epoch", 0)), metrics)
            res["mode"] = f"ray-train-ddp x{replicas}"
            return res
        dm = evaluators.get_datamodule(cfg.evaluator.data, seed=cfg.seed, batch_size=cfg.evaluator.batch_size, **cfg.evaluator.data_kwargs)
        import torch

        # deliberately the per-trial thread count (1 by default), not every core: the supernet's
        # kernels are small, and on a shared 2-core machine 2 threads made an epoch 16x slower (78 s vs 4.7 s)
        torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
        res = train_supernet(sn, datamodule=dm, sampling=oc.sampling, epochs=oc.epochs, lr=lr, optimizer=cfg.evaluator.optimizer,
                             weight_decay=cfg.evaluator.weight_decay, seed=cfg.seed, sampler_options=oc.sampler_options,
                             out_dir=self.dir, on_epoch=log_epoch)
        save_supernet(sn, self.dir, {"epochs_done": oc.epochs, "sampling": oc.sampling})
        res["mode"] = "local"
        return res

    def start(self, resume: bool) -> InheritedExecutor:
        """Train (or reuse) the supernet, then return the scoring executor."""
        from evaluators.supernet import META_FILE, SUPERNET_FILE

        cfg, e = self.cfg, self.engine
        sn = self._build()
        cfg.fixed = {**sn.fixed, **cfg.fixed}  # candidates are paths of this supernet: recipes fixed at its values
        self.run_id = self._mlflow_run(sn)
        done = (self.dir / SUPERNET_FILE).is_file() and (self.dir / META_FILE).is_file() and \
            json.loads((self.dir / META_FILE).read_text()).get("epochs_done") == cfg.oneshot.epochs
        tracker = e.tracker
        if done:
            e.console.print(f"supernet: reusing the trained supernet in {self.dir}")
        else:
            e.console.print(f"supernet: training {cfg.oneshot.epochs} epochs with {cfg.oneshot.sampling!r} sampling")
            res = self._train(sn)
            tracker.flush()
            tracker._log(self.run_id, metrics={"train_wall_time_s": float(res["wall_time_s"])})
            tracker.client.set_tag(self.run_id, "training_mode", res["mode"])
            for name in (SUPERNET_FILE, META_FILE):
                tracker.client.log_artifact(self.run_id, str(self.dir / name))
            e.console.print(f"supernet: trained in {res['wall_time_s']:.1f} s ({res['mode']})")
        tracker.client.set_terminated(self.run_id, status="FINISHED")
        self.executor = InheritedExecutor.from_config(cfg, self.dir)
        self.executor.on_shutdown = self._log_speed
        return self.executor

    def _log_speed(self, executor: InheritedExecutor) -> None:
        """The parent run records how fast candidates were scored (submit of the first to result
        of the last, in the engine's loop, so it includes the driver's ask/cost/tell work)."""
        rate = executor.candidates_per_s
        if rate is not None:
            self.engine.tracker.log_parent_metrics({"inherited_candidates_per_s": rate, "inherited_scored": executor.scored})
            self.engine.console.print(f"scored {executor.scored} candidates with inherited weights at {rate:.1f}/s")

    def retrain_executor(self):
        return self.executor.retrain_executor()
