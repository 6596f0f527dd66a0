"""Exceptions the evaluators raise so the search can tell a failed trial from a bug."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The training (or validation) loss became NaN or infinite.

    The search catches this to record the trial as *failed* (a diverged architecture or recipe is a
    legitimate outcome of a search, not a crash of the platform). It pickles cleanly, so it survives
    the trip back from a Ray worker with its attributes intact.
    """

    def __init__(self, value: float, epoch: int, step: int, stage: str = "train") -> None:
        self.value = float(value)
        self.epoch = int(epoch)
        self.step = int(step)
        self.stage = stage
        super().__init__(
            f"{stage} loss became non-finite ({self.value}) at epoch {self.epoch}, "
            f"global step {self.step}; the trial diverged (try a lower lr or check the model's output)"
        )

    def __reduce__(self):  # default Exception pickling would call cls(message) and fail
        return (type(self), (self.value, self.epoch, self.step, self.stage))
