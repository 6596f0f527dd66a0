"""One owner per run directory: a lock file with the owner's pid and host.

Why a pid file and not only ``fcntl.flock``: the lock must say *who* holds it (the second
``abacus search``/``resume`` names the owner in its one-line refusal) and must survive the
owner's death as evidence, so that a resume can tell a stale lock (its process is gone) from a
live one. The file is created with ``O_CREAT | O_EXCL``, which is atomic on local filesystems,
so of two processes racing for a fresh directory exactly one wins. A lock whose process is dead
on this host is taken over (on resume, or on a new search told to ``--overwrite``); a lock held
from another host cannot be checked and is never taken over silently.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".abacus.lock"


class RunLockedError(RuntimeError):
    """The run directory belongs to another live process (one line for the CLI)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(run_dir: Path) -> dict | None:
    """The lock's owner record, or None when the directory is not locked."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
        return owner if isinstance(owner, dict) else {}
    except json.JSONDecodeError:
        return {}  # torn by a crash while it was written: no live owner can be named


def holder_alive(owner: dict) -> bool | None:
    """True/False for an owner on this host; None when it cannot be checked (another host)."""
    pid, host = owner.get("pid"), owner.get("host")
    if host and host != socket.gethostname():
        return None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False  # a lock torn by a crash while it was written
    return _alive(pid)


class RunLock:
    """``with RunLock(dir, take_stale=True): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, run_dir: str | Path, *, take_stale: bool) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.take_stale = take_stale
        self.held = False
        self.took_over: dict | None = None  # the stale owner replaced, when one was

    def acquire(self) -> "RunLock":
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path.parent)
                if owner is None:
                    continue  # released between our open and our read: try again
                alive = holder_alive(owner)
                who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {owner.get('since', '?')})"
                if alive is None:
                    raise RunLockedError(f"run directory {str(self.path.parent)!r}: expected no other owner, found a lock held by {who}, "
                                         f"which cannot be checked from here; if that search is gone, delete {self.path}") from None
                if alive:
                    raise RunLockedError(f"run directory {str(self.path.parent)!r}: expected no other owner, found it in use by {who}; "
                                         "wait for that search to end or stop it") from None
                if not self.take_stale:
                    raise RunLockedError(f"run directory {str(self.path.parent)!r}: expected a new directory, found one left by a stopped "
                                         f"search ({who}); continue it with 'abacus resume {self.path.parent}' or pass --overwrite") from None
                self._take_over(owner)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(record)
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return self
        raise RunLockedError(f"run directory {str(self.path.parent)!r}: expected to take its lock, found it contended by other processes")

    def _take_over(self, owner: dict) -> None:
        """Replace a dead owner's lock; a rename makes sure two takers cannot both remove it."""
        stale = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return  # another process took it over first; the retry will see its lock
        stale.unlink(missing_ok=True)
        self.took_over = owner

    def release(self) -> None:
        if not self.held:
            return
        owner = read_owner(self.path.parent)
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
