"""Evaluators for fault-tolerance tests, imported by Ray workers (tests/search is on their path)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def marker(seed: int) -> Path:
    return Path(tempfile.gettempdir()) / f"abacus-crash-once-{seed}"


def crash_once(model, *, datamodule, epochs, seed, reporter):
    """Kill the worker process the first time a seed is seen (as an OOM kill would), then succeed."""
    m = marker(seed)
    if not m.exists():
        m.touch()
        os._exit(1)
    return {"val_accuracy": 0.5, "epochs": epochs}


# -- fast evaluators for the integrity tests (no Lightning training: each trial takes milliseconds) --

ACCURACY = [0.9, 0.5, 0.7, 0.6, 0.1, 0.8, 0.3, 0.95, 0.4, 0.2, 0.85, 0.65]


def quick(model, *, datamodule, epochs, seed, reporter):
    """Metrics that depend only on the trial's seed (seed = config seed + trial number), reported
    per epoch so an early-stopping scheduler can act. ``ABACUS_TEST_SLEEP`` slows each epoch."""
    import time

    acc = ACCURACY[seed % len(ACCURACY)]
    _gate()
    pause = float(os.environ.get("ABACUS_TEST_SLEEP", "0"))
    for e in range(epochs):
        if pause:
            time.sleep(pause)
        v = acc * (e + 1) / epochs
        if reporter(e, {"val_accuracy": v, "val_loss": 1.0 - v}):
            return {"val_accuracy": v, "val_loss": 1.0 - v, "epochs": e + 1, "stopped_early": True}
    _note_call(seed)
    _kill_at(seed)
    return {"val_accuracy": acc, "val_loss": 1.0 - acc, "epochs": epochs}


def _gate() -> None:
    """ABACUS_TEST_STARTED: a file touched when a training starts; ABACUS_TEST_HOLD: a file the
    training waits for (up to 5 minutes), so a test acts while a trial is surely running."""
    import time

    started, hold = os.environ.get("ABACUS_TEST_STARTED"), os.environ.get("ABACUS_TEST_HOLD")
    if started:
        Path(started).touch()
    if hold:
        deadline = time.monotonic() + 300
        while not Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def broken(model, *, datamodule, epochs, seed, reporter):
    """A platform fault every trial hits the same way."""
    raise ImportError(f"no module named 'missing_backend' (seed {seed})")


def _note_call(seed: int) -> None:
    """Append the seed to ABACUS_TEST_CALLS (a file) when set: which trainings really ran."""
    path = os.environ.get("ABACUS_TEST_CALLS")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{seed}\n")


def _kill_at(seed: int) -> None:
    """SIGKILL the process (the driver, with the local executor) once, when the seed is
    ABACUS_TEST_KILL_SEED: as an OOM kill or a closed laptop would."""
    target = os.environ.get("ABACUS_TEST_KILL_SEED")
    if target is not None and int(target) == seed:
        m = Path(os.environ["ABACUS_TEST_MARK"])
        if not m.exists():
            m.touch()
            os.kill(os.getpid(), 9)


def main_with_faults() -> None:
    """``abacus`` with one fault injected, chosen by ABACUS_FAULT (once, marked by ABACUS_TEST_MARK):

    - ``child:N``: die between creating trial N's MLflow child run and writing anything into it;
    - ``after_finish:N``: die right after trial N was recorded and told (nothing in flight).
    """
    import sys

    fault = os.environ.get("ABACUS_FAULT", "")
    kind, _, arg = fault.partition(":")
    mark = Path(os.environ.get("ABACUS_TEST_MARK", "/nonexistent/mark"))
    if kind == "child":
        import search.tracking_batch as tracking_batch

        original = tracking_batch.BatchWriter.add_run

        def add_run(self, run):
            # the child run exists in the store (RUNNING, nothing in it) and the driver dies
            if run.number == int(arg) and "trial_number" in run.tags and not mark.exists():
                mark.touch()
                self.client.create_run(self.experiment_id, run_name=run.run_name,
                                       tags={"mlflow.parentRunId": self.parent_id, "abacus.role": "trial", "trial_number": str(run.number)})
                os._exit(9)
            return original(self, run)

        tracking_batch.BatchWriter.add_run = add_run
    elif kind == "after_finish":
        import search.engine as engine

        original_finish = engine.SearchEngine._finish

        def _finish(self, trial, *args):
            original_finish(self, trial, *args)
            if trial.number == int(arg) and not mark.exists():
                mark.touch()
                os._exit(9)

        engine.SearchEngine._finish = _finish
    from search.cli import app

    sys.argv = ["abacus", *sys.argv[1:]]
    app()
