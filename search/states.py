"""The states a trial can end in, typed: one Enum shared by the worker, the engine and tracking.

A ``StrEnum`` so the values stay plain strings where they are stored (the journal's JSON, MLflow
tags, summary.json) and old records written with strings still compare equal.
"""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    COMPLETE = "complete"  # trained, every objective produced
    FAIL = "fail"  # raised, went NaN, timed out, lost its worker, or the cost model failed
    PRUNED = "pruned"  # stopped early by the scheduler
    INFEASIBLE = "infeasible"  # violated a hard constraint before training (never trained)

    @property
    def mlflow_status(self) -> str:
        """The MLflow run status a child run in this state ends with."""
        return {TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED"}.get(self, "KILLED")
