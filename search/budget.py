"""When to stop asking for trials: a trial count, a wall-clock time, or both (first reached wins).

Why: a user who has 15 minutes should not have to size a trial count with a pilot run. The time
budget only stops *asking*: trials already running finish normally (their results count), so a
search ends at most one trial length after ``budget.time_s``. On ``resume`` the time counts from
the resume (the trial count counts every trial of the run).
"""

from __future__ import annotations

import time
from typing import Any

# what Optuna samplers size their start-up phase on when only a time budget is given
NOMINAL_TRIALS = 60


class TrialBudget:
    def __init__(self, budget: Any, started: float | None = None) -> None:
        self.trials: int | None = getattr(budget, "trials", None)
        self.time_s: float | None = getattr(budget, "time_s", None)
        self.started = time.monotonic() if started is None else started
        self.stopped_by = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def may_ask(self, asked: int) -> bool:
        """Whether another trial may be asked, given ``asked`` trials so far; remembers what stopped it."""
        if self.trials is not None and asked >= self.trials:
            self.stopped_by = self.stopped_by or f"trials ({self.trials})"
            return False
        if self.time_s is not None and self.elapsed() >= self.time_s:
            self.stopped_by = self.stopped_by or f"time ({self.time_s:g} s)"
            return False
        return True


def planned_trials(cfg: Any) -> int:
    """The trial count samplers size themselves on: ``budget.trials``, else a nominal count."""
    return int(cfg.budget.trials) if cfg.budget.trials is not None else NOMINAL_TRIALS
