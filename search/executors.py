"""Where trials run: Ray tasks (default) or in-process, one at a time (for breakpoints).

Both give the same interface: ``submit(spec)``, ``wait_one() -> TrialResult``, ``in_flight``.
The Ray executor asks Ray for ``cpus_per_trial``/``gpus_per_trial`` per task, joins an existing
cluster when ``address`` is given (``auto`` or ``host:port``) and otherwise starts a local Ray
sized to the workers, retries a task whose worker process died (Ray's ``max_retries``), and
cancels a trial that runs past its timeout, reporting it as failed with that reason.
"""

from __future__ import annotations

import time
from typing import Any

from search.states import TrialState
from search.ray_start import start_ray
from search.worker import TrialResult, TrialSpec, run_trial, warm_up

class LocalExecutor:
    """Runs each trial in the driver process when it is collected: no parallelism, full debuggability."""

    def __init__(self) -> None:
        self._queue: list[TrialSpec] = []

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)

    def wait_one(self) -> TrialResult:
        return run_trial(self._queue.pop(0))

    def shutdown(self) -> None:
        self._queue.clear()


class RayExecutor:
    def __init__(self, workers: int, *, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 address: str | None = None, trial_timeout_s: float | None = None, max_retries: int = 2,
                 data: str | None = None, data_kwargs: dict[str, Any] | None = None, split_seed: int = 0,
                 batch_size: int = 64) -> None:
        import ray

        self._ray = ray
        self._owns_ray = start_ray(address, num_cpus=int(round(workers * cpus_per_trial)),
                                   num_gpus=None if gpus_per_trial else 0)
        if address:  # a cluster we joined: one trial's request must fit on some node, or it waits forever
            from search.preflight import check_cluster

            try:
                check_cluster(cpus_per_trial, gpus_per_trial, ray)
            except Exception:
                self.shutdown()
                raise
        self._remote = ray.remote(run_trial).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=max_retries)
        self._timeout = trial_timeout_s
        self._pending: dict[Any, tuple[TrialSpec, float]] = {}
        # one warm-up task per worker slot, same resources as a trial: each worker process
        # imports torch and Lightning and loads the data set now, while the driver sets up, not in
        # its first trial
        warm = ray.remote(warm_up).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)
        self.warming = [warm.remote(data, data_kwargs, split_seed, batch_size) for _ in range(max(1, workers))]

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, spec: TrialSpec) -> None:
        ref = self._remote.remote(spec)
        self._pending[ref] = (spec, time.monotonic())

    def wait_one(self) -> TrialResult:
        ray = self._ray
        while True:
            wait_s = None
            if self._timeout is not None:
                oldest = min(t for _, t in self._pending.values())
                wait_s = max(0.0, oldest + self._timeout - time.monotonic())
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=wait_s)
            if ready:
                ref = ready[0]
                spec, _ = self._pending.pop(ref)
                try:
                    return ray.get(ref)
                except Exception as exc:  # the task itself died (worker killed, retries exhausted)
                    return TrialResult(spec.number, TrialState.FAIL, reason=f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            now = time.monotonic()
            for ref, (spec, started) in list(self._pending.items()):
                if now - started >= self._timeout:
                    ray.cancel(ref, force=True)
                    del self._pending[ref]
                    return TrialResult(spec.number, TrialState.FAIL, reason=f"timeout: ran longer than budget.trial_timeout_s={self._timeout:g}")

    def shutdown(self) -> None:
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns_ray:
            self._ray.shutdown()


def make_executor(cfg: Any):
    from search.splits import split_seed

    if cfg.executor == "local":
        return LocalExecutor()
    return RayExecutor(
        cfg.workers, cpus_per_trial=cfg.resources.cpus_per_trial, gpus_per_trial=cfg.resources.gpus_per_trial,
        address=cfg.address, trial_timeout_s=cfg.budget.trial_timeout_s, max_retries=cfg.budget.max_retries,
        data=cfg.evaluator.data, data_kwargs=dict(cfg.evaluator.data_kwargs), split_seed=split_seed(cfg), batch_size=cfg.evaluator.batch_size,
    )
