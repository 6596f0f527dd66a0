"""Ctrl-C and SIGTERM end a search the same way: workers stopped, parent run KILLED, journal
flushed, and the ``abacus resume DIR`` line printed.

Why SIGTERM is turned into a ``KeyboardInterrupt``: the engine already unwinds cleanly from one
(its ``finally`` flushes and records), and Lightning, when a trial runs in the driver, treats a
``KeyboardInterrupt`` as a graceful stop. Lightning then ignores SIGINT for the rest of the
process, so the previous handlers are put back on the way out.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) delivered to the driver, raised in its main thread."""


class SearchInterrupted(Exception):
    """The search stopped on a signal after saving its state; the CLI prints how to resume."""

    def __init__(self, run_dir: str, signal_name: str) -> None:
        self.run_dir, self.signal_name = run_dir, signal_name
        super().__init__(f"interrupted by {signal_name}; the run is saved: continue it with: abacus resume {run_dir}")


@contextmanager
def stop_on_signals() -> Iterator[dict[str, str]]:
    """Within the block, SIGTERM/SIGHUP raise ``Interrupted``; yields a dict whose ``name`` is
    the signal that arrived (``SIGINT`` for Ctrl-C is filled in by the engine)."""
    seen: dict[str, str] = {}
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum, frame):
        seen["name"] = signal.Signals(signum).name
        raise Interrupted(seen["name"])

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    try:
        yield seen
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
