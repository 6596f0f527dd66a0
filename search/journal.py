"""Optuna journal storage that syncs to disk once per trial event, not once per write.

Why: Optuna's ``JournalFileBackend`` takes a file lock and fsyncs on every append, and a trial
writes many records (creation, one per suggested parameter, user attributes, the result): on
this machine's disk that was ~2 ms each, a large part of the engine's per-trial overhead. The
driver is the only writer of a run directory's journal, so appends are buffered in memory and
written (one lock, one fsync) when the engine reaches a point that must survive a crash: after
a trial's outcome is recorded and after ``tell``. A crash loses at most the buffered records of
trials still running, which resume re-queues anyway. Reads see the buffer, so the storage's
replay is unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable

from optuna.storages.journal import BaseJournalBackend, JournalFileBackend


class BufferedJournalFileBackend(BaseJournalBackend):
    def __init__(self, file_path: str) -> None:
        self._file = JournalFileBackend(file_path)
        self._flushed = sum(1 for _ in self._file.read_logs(0))
        self._buffer: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        if log_number_from < self._flushed:
            yield from self._file.read_logs(log_number_from)
            yield from self._buffer
        else:
            yield from self._buffer[log_number_from - self._flushed:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._buffer.extend(logs)

    def flush(self) -> None:
        """Write the buffered records with one lock and one fsync."""
        if self._buffer:
            self._file.append_logs(self._buffer)
            self._flushed += len(self._buffer)
            self._buffer = []
