"""Coarse-to-fine one-shot search: one group of dimensions per stage, each over its own fair supernet.

Why: the GAN-generator NAS paper (arXiv 2104.09223, abstract only: "three sub-optimization
problems", path -> operator -> channel, over a fairly trained supernet) splits the search so that
each supernet only has to rank one kind of choice. The procedure below is the reference design of
``techniques/vision-generative-detection.md`` §1 [inferred there, not verified against the paper]:

* stage ``k`` fixes every dimension outside its own group: dimensions of earlier stages at the
  values the earlier stages chose, dimensions of later stages (and of no stage) at the start
  architecture (``start_from``: a preset of the space, e.g. the teacher, else the space's defaults);
* its supernet is built with those values fixed, so its choice layers are the stage's dimensions
  only, and trained with the ``oneshot`` block's sampling (strict fairness by default); with
  ``warm_start`` it starts from the previous stage's supernet weights (the "fine-tune" variant);
* candidates of the stage are scored with inherited weights by the configured strategy (any);
* the stage's choice is the best candidate on ``select_by`` among those within ``limits``,
  recorded in ``<out>/stages/<k>-<name>/stage.json`` before the next stage starts; later stages
  read it from there, so nothing they do can change it (stage isolation).

Every stage before the last is a one-shot search of its own (``search.engine.SearchEngine`` on a
derived config) whose MLflow run is a child of the search's run (``abacus.role: stage``, tag
``abacus.stage``), with its front, hypervolume and wall time. The last stage is the search's own
loop: its front is the search's front, and the ``retrain`` block trains that front from scratch.
The search's run gets ``stages.json`` (every stage's dimensions, fixed values, choice, front and
wall time) and a ``stage_wall_time_s.<name>`` metric per stage.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from search.errors import ConfigError
from search.oneshot import OneShot
from search.ray_start import start_ray

STAGES_DIR = "stages"
STAGE_FILE = "stage.json"       # a finished stage's record (what later stages and resume read)
STAGES_FILE = "stages.json"     # every stage's record, an artifact of the search's run
GROUP_PREFIX = "group:"
_TAG = re.compile(r"\s*\[([A-Za-z0-9_-]+)\]")


# -- which dimensions a stage searches --------------------------------------------------------

def dimension_group(space: Any, label: str) -> str | None:
    """The group a space tags a dimension with (``path`` / ``operator`` / ``channel`` for the GAN
    generator): the dimension's ``group`` attribute if it has one, else a leading ``[NAME]`` in its
    help text (how ``gan-generator`` tags them; help travels with ``restricted`` and JSON)."""
    dim = space[label]
    group = getattr(dim, "group", None)
    if group:
        return str(group)
    m = _TAG.match(getattr(dim, "help", "") or "")
    return m.group(1) if m else None


def stage_labels(space: Any, patterns: Sequence[str]) -> list[str]:
    """The space's labels a stage's ``dims`` name, in the space's order: shell patterns over
    labels (``stage*.op``) or ``group:NAME`` for the dimensions the space tags with group NAME."""
    out = []
    for label in space.labels:
        for pat in patterns:
            if pat.startswith(GROUP_PREFIX):
                if dimension_group(space, label) == pat[len(GROUP_PREFIX):]:
                    out.append(label)
                    break
            elif fnmatch.fnmatchcase(label, pat):
                out.append(label)
                break
    return out


def start_architecture(space: Any, start_from: str | None) -> dict[str, Any]:
    """The values of dimensions no stage has chosen yet: a preset of the space, or its defaults."""
    return dict(space.preset(start_from)) if start_from else dict(space.default())


def check_coarse_to_fine(cfg: Any, space: Any) -> None:
    """Config checks of the ``coarse_to_fine`` block (called by ``search.config.check_names``);
    ``space`` is the restricted space. Sets ``budget.trials`` to the last stage's trials (the
    search's own loop runs the last stage)."""
    from search.config import COST_FIELDS, CONSTRAINABLE

    c2f = cfg.coarse_to_fine
    if cfg.oneshot is None:
        raise ConfigError("coarse_to_fine", "a 'oneshot' block too (each stage trains a supernet and scores with its weights)", "no oneshot block")
    if cfg.budget.time_s is not None:
        raise ConfigError("budget.time_s", "no time budget with coarse_to_fine (each stage's 'trials' is its budget)", cfg.budget.time_s)
    if c2f.start_from is not None and c2f.start_from not in space.presets:
        raise ConfigError("coarse_to_fine.start_from", f"a preset of {cfg.space!r} ({', '.join(sorted(space.presets)) or 'none'})", c2f.start_from)
    names = cfg.objective_names
    if c2f.select_by is not None and c2f.select_by not in names:
        raise ConfigError("coarse_to_fine.select_by", f"an objective name ({', '.join(names)})", c2f.select_by)
    known = tuple(dict.fromkeys((*names, *CONSTRAINABLE, *COST_FIELDS)))
    for key in c2f.limits:
        if key not in known:
            raise ConfigError(f"coarse_to_fine.limits.{key}", f"an objective or cost field ({', '.join(known)})", key)
    seen: dict[str, str] = {}
    stage_names: set[str] = set()
    for i, st in enumerate(c2f.stages):
        if st.name in stage_names:
            raise ConfigError(f"coarse_to_fine.stages.{i}.name", "a name used by one stage only", st.name)
        stage_names.add(st.name)
        for pat in st.dims:
            if pat.startswith(GROUP_PREFIX) and not stage_labels(space, [pat]):
                raise ConfigError(f"coarse_to_fine.stages.{i}.dims", f"a group some dimension of {cfg.space!r} is tagged with", pat)
        labels = [lab for lab in stage_labels(space, st.dims) if lab not in cfg.fixed]
        if not labels:
            raise ConfigError(f"coarse_to_fine.stages.{i}.dims", f"patterns naming at least one dimension of {cfg.space!r} that is not fixed",
                              list(st.dims))
        for lab in labels:
            if lab in seen:
                raise ConfigError(f"coarse_to_fine.stages.{i}.dims", f"dimensions of no earlier stage ({lab} is in stage {seen[lab]!r})", list(st.dims))
            seen[lab] = st.name
        if st.strategy is not None:
            from search.strategies import STRATEGIES

            if st.strategy.name not in STRATEGIES or st.strategy.name == "staged":
                raise ConfigError(f"coarse_to_fine.stages.{i}.strategy.name", f"one of {', '.join(n for n in STRATEGIES.names() if n != 'staged')}", st.strategy.name)
    if c2f.warm_start and cfg.executor != "local" and ((cfg.oneshot.workers or cfg.workers) > 1 or cfg.address):
        raise ConfigError("oneshot.workers", "1 with coarse_to_fine.warm_start (a warm start loads the previous stage's weights "
                          "into a supernet trained in this process; or set warm_start: false)", cfg.oneshot.workers or cfg.workers)
    cfg.budget.trials = c2f.stages[-1].trials


# -- one stage -------------------------------------------------------------------------------

def stage_config(cfg: Any, index: int, fixed: Mapping[str, Any], tracking_uri: str, out: Path) -> Any:
    """The derived config of a stage that runs as a search of its own (a stage before the last)."""
    st = cfg.coarse_to_fine.stages[index]
    sub = cfg.model_copy(deep=True)
    sub.name = f"{cfg.name}.{index + 1}-{st.name}"
    sub.mlflow.experiment = cfg.experiment_name
    sub.mlflow.tracking_uri = tracking_uri
    sub.out = str(out)
    sub.fixed = dict(fixed)
    sub.budget.trials = st.trials
    if st.strategy is not None:
        sub.strategy = st.strategy.model_copy(deep=True)
    if st.epochs is not None:
        sub.oneshot.epochs = st.epochs
    sub.retrain = None
    sub.coarse_to_fine = None
    return sub


def select(records: Sequence[Any], objectives: Sequence[Any], select_by: str | None, limits: Mapping[str, float]) -> tuple[Any, bool]:
    """The stage's choice among complete ``records`` (``search.engine.TrialRecord``): best on
    ``select_by`` (default: the first objective), ties by the other objectives in order, then by
    trial number; only records whose metrics are within every ``limits`` bound (``<=``) are
    eligible. Returns ``(record, within_limits)``; with none within the limits, the record
    closest to them (summed relative excess) is returned with ``False``."""
    names = [o.name for o in objectives]
    sign = {o.name: (-1.0 if o.direction == "maximize" else 1.0) for o in objectives}
    first = select_by or names[0]
    order = [first, *[n for n in names if n != first]]
    complete = [r for r in records if r.state == "complete"]
    if not complete:
        raise RuntimeError("no complete candidate to choose from")

    def value(r: Any, key: str) -> float:
        v = r.values.get(key, r.metrics.get(key))
        return float("inf") if v is None else float(v)

    def excess(r: Any) -> float:
        return sum(max(0.0, value(r, k) - b) / max(abs(b), 1e-12) for k, b in limits.items())

    eligible = [r for r in complete if excess(r) == 0.0]
    if eligible:
        return min(eligible, key=lambda r: (*[sign[n] * value(r, n) for n in order], r.number)), True
    return min(complete, key=lambda r: (excess(r), r.number)), False


class StageExecutor:
    """The one-shot executor with every result tagged by its stage (``stage`` on each child run)."""

    _OWN = ("inner", "stage", "after_shutdown")

    def __init__(self, inner: Any, stage: str) -> None:
        self.inner = inner
        self.stage = stage
        self.after_shutdown = None  # called once the inner executor is shut down (CoarseToFine stops its Ray)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def wait_one(self) -> Any:
        result = self.inner.wait_one()
        result.tags = {**result.tags, "stage": self.stage}
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        finally:
            if self.after_shutdown is not None:
                self.after_shutdown()


class StageOneShot(OneShot):
    """One-shot mode for one stage: the supernet may start from the previous stage's weights,
    and the stage's runs carry its name."""

    def __init__(self, engine: Any, stage: str, index: int, warm_from: Path | None = None, nested_in: str | None = None) -> None:
        super().__init__(engine)
        self.stage, self.index, self.warm_from, self.nested_in = stage, index, warm_from, nested_in
        self.warm_loaded = 0

    def _build(self):
        # OneShot._build seeds the initial weights, so a stage's result depends on its own inputs only
        sn = super()._build()
        if self.warm_from is not None:
            self.warm_loaded = warm_start(sn, self.warm_from)
        return sn

    def _mlflow_run(self, sn: Any) -> str:
        rid = super()._mlflow_run(sn)
        client = self.engine.tracker.client
        client.set_tag(rid, "abacus.stage", self.stage)
        if self.warm_from is not None:
            client.set_tag(rid, "warm_start_from", str(self.warm_from))
        return rid

    def start(self, resume: bool):
        client = self.engine.tracker.client
        if self.nested_in is not None:  # a stage before the last: its search run is a child of the search's run
            for key, value in (("mlflow.parentRunId", self.nested_in), ("abacus.role", "stage")):
                client.set_tag(self.engine.parent_id, key, value)
        client.set_tag(self.engine.parent_id, "abacus.stage", self.stage)
        client.set_tag(self.engine.parent_id, "abacus.stage_index", str(self.index + 1))
        self.started = time.perf_counter()
        executor = super().start(resume)
        self.supernet_s = time.perf_counter() - self.started
        self.executor = StageExecutor(executor, self.stage)
        return self.executor


def warm_start(supernet: Any, directory: Path) -> int:
    """Copy the tensors of ``directory``'s saved supernet whose names and shapes match (the
    previous stage's weights; modules the earlier stage did not have keep their init). Returns
    how many tensors were copied."""
    import torch

    from evaluators.supernet import SUPERNET_FILE

    saved = torch.load(Path(directory) / SUPERNET_FILE, weights_only=True, map_location="cpu")
    own = supernet.state_dict()
    take = {k: v for k, v in saved.items() if k in own and (
        tuple(own[k].shape) == tuple(v.shape) if isinstance(v, torch.Tensor) and isinstance(own[k], torch.Tensor)
        else type(v) is type(own[k]))}
    supernet.load_state_dict(take, strict=False)
    return len(take)


def _front_rows(front: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"trial": r["trial"], "arch_id": r["arch_id"], "arch": r["arch"], "values": r["values"],
             "run_id": r["run_id"] if isinstance(r["run_id"], str) else ""} for r in front]


# -- the whole procedure ---------------------------------------------------------------------

class CoarseToFine:
    """The engine's one-shot mode when the config has a ``coarse_to_fine`` block: runs the stages
    before the last as searches of their own, then returns the last stage's executor."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.cfg = engine.cfg
        self.dir = Path(engine.out) / STAGES_DIR
        self.records: list[dict[str, Any]] = []
        self.final: StageOneShot | None = None
        self._owns_ray = False

    def _labels(self, index: int) -> list[str]:
        st = self.cfg.coarse_to_fine.stages[index]
        return [lab for lab in stage_labels(self.engine.space, st.dims) if lab not in self.user_fixed]

    def _fixed_for(self, index: int, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """Everything but stage ``index``'s dimensions: user-fixed, earlier choices, start values."""
        own = set(self._labels(index))
        start = {k: v for k, v in self.start_arch.items() if k not in own}
        return {**start, **chosen, **self.user_fixed}

    def _init_ray(self) -> None:
        """One Ray for every stage (each stage's executor would otherwise start and stop its own)."""
        if self.cfg.executor == "local":
            return
        cfg = self.cfg
        if start_ray(cfg.address, num_cpus=int(round(cfg.workers * cfg.resources.cpus_per_trial))):
            self._owns_ray = True

    def _run_stage(self, index: int, chosen: dict[str, Any], resume: bool) -> dict[str, Any]:
        """A stage before the last, as a search of its own; its record (reused when finished)."""
        from search.engine import SearchEngine

        cfg, e = self.cfg, self.engine
        st = cfg.coarse_to_fine.stages[index]
        out = self.dir / f"{index + 1}-{st.name}"
        done = out / STAGE_FILE
        if done.is_file():
            rec = json.loads(done.read_text())
            e.console.print(f"stage {index + 1} ({st.name}): reusing its finished record ({done})")
            return rec
        fixed = self._fixed_for(index, chosen)
        sub = stage_config(cfg, index, fixed, e.tracker.uri, out)
        engine = SearchEngine(sub, console=e.console, progress=e.show_progress)
        engine.stage_context = {"stage": st.name, "index": index, "nested_in": e.parent_id, "warm_from": self._warm_from(index)}
        e.console.print(f"stage {index + 1} ({st.name}): {len(self._labels(index))} dimensions, {st.trials} candidates")
        started = time.perf_counter()
        again = (out / "run.json").is_file()
        summary = engine.run(resume=again, overwrite=out.exists() and not again)
        wall = time.perf_counter() - started
        best, within = select(list(engine.records.values()), cfg.objectives, cfg.coarse_to_fine.select_by, cfg.coarse_to_fine.limits)
        labels = self._labels(index)
        rec = {"stage": st.name, "index": index + 1, "dims": labels, "fixed": fixed,
               "chosen": {k: best.arch[k] for k in labels if k in best.arch}, "chosen_trial": best.number,
               "chosen_values": best.values, "within_limits": within, "front": _front_rows(summary["front"]),
               "hypervolume": summary["hypervolume"], "complete": summary["complete"], "trials": summary["trials"],
               "wall_time_s": round(wall, 2), "supernet_s": round(getattr(engine.oneshot, "supernet_s", 0.0), 2),
               "run_id": engine.parent_id, "out": str(out)}
        client = e.tracker.client
        client.log_metric(engine.parent_id, "stage_wall_time_s", rec["wall_time_s"])
        client.set_tag(engine.parent_id, "stage_choice", json.dumps(rec["chosen"], sort_keys=True))
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2, default=str))
        tmp.replace(done)
        client.log_artifact(engine.parent_id, str(done))
        if not within:
            e.console.print(f"[yellow]stage {st.name}: no candidate within the limits {dict(cfg.coarse_to_fine.limits)}; took the closest[/]")
        e.console.print(f"stage {index + 1} ({st.name}) chose {rec['chosen']} in {wall:.1f} s")
        return rec

    def _warm_from(self, index: int) -> Path | None:
        if index == 0 or not self.cfg.coarse_to_fine.warm_start:
            return None
        st = self.cfg.coarse_to_fine.stages[index - 1]
        return self.dir / f"{index}-{st.name}" / "supernet"

    def start(self, resume: bool):
        """Run the stages before the last, then start the last one (the search's own loop)."""
        from search.oneshot import SUPERNET_DIR

        cfg, e = self.cfg, self.engine
        c2f = cfg.coarse_to_fine
        self.user_fixed = dict(cfg.fixed)
        self.start_arch = start_architecture(e.space, c2f.start_from)
        self.started = time.perf_counter()
        self._init_ray()
        chosen: dict[str, Any] = {}
        try:
            for index in range(len(c2f.stages) - 1):
                rec = self._run_stage(index, chosen, resume)
                self.records.append(rec)
                chosen.update(rec["chosen"])
                e.tracker.log_parent_metrics({f"stage_wall_time_s.{rec['stage']}": rec["wall_time_s"]})
            last = len(c2f.stages) - 1
            st = c2f.stages[last]
            cfg.fixed = self._fixed_for(last, chosen)
            if st.epochs is not None:
                cfg.oneshot.epochs = st.epochs
            e.tracker.client.set_tag(e.parent_id, "coarse_to_fine", ",".join(s.name for s in c2f.stages))
            e.console.print(f"stage {last + 1} ({st.name}): {len(self._labels(last))} dimensions, {st.trials} candidates (the search's front)")
            self.final = StageOneShot(e, st.name, last, warm_from=self._warm_from(last))
            self.final.dir = Path(e.out) / SUPERNET_DIR
            self.final_started = time.perf_counter()
            executor = self.final.start(resume)
        except BaseException:
            self._shutdown_ray()
            raise
        self.executor = executor
        executor.on_shutdown = self._on_shutdown
        executor.after_shutdown = self._shutdown_ray
        self.search_end: float | None = None
        return executor

    def retrain_executor(self):
        if self.search_end is None:
            self.search_end = time.perf_counter()
        return self.final.retrain_executor()

    def _on_shutdown(self, executor: Any) -> None:
        """The last stage's record, ``stages.json`` and the per-stage wall times on the search's run."""
        self.final._log_speed(executor)
        e, st = self.engine, self.cfg.coarse_to_fine.stages[-1]
        end = self.search_end or time.perf_counter()
        wall = round(end - self.final_started, 2)
        last = len(self.cfg.coarse_to_fine.stages) - 1
        rec = {"stage": st.name, "index": last + 1, "dims": self._labels(last), "fixed": dict(self.cfg.fixed),
               "wall_time_s": wall, "supernet_s": round(self.final.supernet_s, 2), "run_id": e.parent_id,
               "front": "the search's front (summary.json, pareto.csv)"}
        records = [*self.records, rec]
        e.tracker.log_parent_metrics({f"stage_wall_time_s.{st.name}": wall, "coarse_to_fine_wall_time_s": round(end - self.started, 2)})
        path = Path(e.out) / STAGES_FILE
        path.write_text(json.dumps(records, indent=2, default=str))
        e.tracker.log_artifact(path)

    def _shutdown_ray(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


def make_oneshot(engine: Any) -> OneShot | CoarseToFine:
    """The engine's one-shot mode for its config: coarse-to-fine stages, one stage of them
    (a nested stage search), or plain one-shot."""
    if getattr(engine.cfg, "coarse_to_fine", None) is not None:
        return CoarseToFine(engine)
    ctx = getattr(engine, "stage_context", None)
    if ctx is not None:
        return StageOneShot(engine, ctx["stage"], ctx["index"], warm_from=ctx.get("warm_from"), nested_in=ctx.get("nested_in"))
    return OneShot(engine)
