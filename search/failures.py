"""Stop on systematic failure: ``budget.max_failures`` consecutive trials failing for the same
reason end the search, with that reason in one line.

Why: when the platform itself is broken (a missing package, a data path gone, no GPU memory)
every trial fails the same way, and burning the whole budget on it wastes hours. The reason is
compared with its numbers masked (``#``), so "size 37 vs 41" and "size 12 vs 9" count as one.
"""

from __future__ import annotations

import re

from search.states import TrialState

_NUMBER = re.compile(r"\d+(\.\d+)?")


class SystematicFailure(RuntimeError):
    """The search was stopped because trials keep failing for one reason."""

    def __init__(self, count: int, reason: str) -> None:
        self.count, self.reason = count, reason
        super().__init__(f"search stopped: the last {count} trials failed with the same reason (budget.max_failures={count}): {reason}")


def reason_key(reason: str) -> str:
    first = reason.strip().splitlines()[0] if reason.strip() else ""
    return _NUMBER.sub("#", first)


class FailureStreak:
    """Counts consecutive failed trials with the same reason; ``limit`` 0 turns it off."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.key = ""
        self.count = 0

    def record(self, state: str, reason: str) -> None:
        """Raise ``SystematicFailure`` when this result makes ``limit`` same-reason failures in a row.
        Infeasible and pruned trials are decisions, not failures: they neither count nor reset."""
        if state == TrialState.COMPLETE:
            self.key, self.count = "", 0
            return
        if state != TrialState.FAIL:
            return
        key = reason_key(reason)
        self.count = self.count + 1 if key == self.key else 1
        self.key = key
        if self.limit and self.count >= self.limit:
            raise SystematicFailure(self.count, reason.strip().splitlines()[0][:300] if reason.strip() else "no reason given")


class ConstraintsExhausted(RuntimeError):
    """``budget.max_infeasible`` candidates in a row violated the constraints."""

    def __init__(self, count: int, violation: str) -> None:
        self.count, self.violation = count, violation
        super().__init__(f"search stopped: the last {count} candidates all violated the constraints (budget.max_infeasible={count}; "
                         f"latest: {violation}); loosen the constraints or restrict the space")
