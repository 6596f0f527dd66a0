"""Search progress: a live bar on a terminal, one plain line per finished trial otherwise.

Why: with stderr redirected (a log file, CI, ``nohup``) a live bar prints nothing useful until
the end; a line per finished trial (number, state, objectives, front size, counts, elapsed time)
shows a long search is alive and can be followed with ``tail -f``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence


def choose_mode(enabled: bool, stream: Any = None) -> str:
    """``"bar"`` on a terminal, ``"log"`` otherwise, ``"none"`` when progress is off."""
    if not enabled:
        return "none"
    stream = stream or sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "log"


class BarProgress:
    """Rich's live bar (total unknown with a time-only budget)."""

    def __init__(self, console: Any, name: str, total: int | None, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console, transient=False)
        self.task = self.progress.add_task(name, total=total, completed=done, detail="")
        self.progress.start()

    def trial_done(self, record: Any, counts: dict[str, int], front: int, objectives: Sequence[str]) -> None:
        self.progress.update(self.task, advance=1, detail=f"done {counts['complete']}  failed {counts['failed']}  "
                                                          f"infeasible {counts['infeasible']}  front {front}")

    def stop(self) -> None:
        self.progress.stop()


class LogProgress:
    """One line per finished trial on ``stream`` (flushed), e.g.::

        [  41 s] trial 7 complete  val_accuracy=0.9653 energy_mj=0.05812  front 3 | 6/20: complete 5 failed 0 pruned 1 infeasible 0
    """

    def __init__(self, name: str, total: int | None, done: int, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.finished = total, done
        self.started = time.monotonic()
        self._write(f"{name}: search started ({done} trials already done, budget {total if total is not None else 'by time'})")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def trial_done(self, record: Any, counts: dict[str, int], front: int, objectives: Sequence[str]) -> None:
        self.finished += 1
        values = "  ".join(f"{n}={record.values[n]:.4g}" for n in objectives if n in record.values)
        reason = "" if record.state == "complete" else f"  ({record.reason.splitlines()[0][:120]})" if record.reason else ""
        of = f"/{self.total}" if self.total is not None else ""
        self._write(f"[{time.monotonic() - self.started:5.0f} s] trial {record.number} {record.state}  {values}{reason}  front {front} | "
                    f"{self.finished}{of}: complete {counts['complete']} failed {counts['failed']} pruned {counts['pruned']} "
                    f"infeasible {counts['infeasible']}")

    def stop(self) -> None:
        pass


def make_progress(mode: str, console: Any, name: str, total: int | None, done: int):
    if mode == "bar":
        return BarProgress(console, name, total, done)
    if mode == "log":
        return LogProgress(name, total, done)
    return None
