"""One writer per run directory: an advisory lock held while a run trains.

``RUN/.lock`` is locked with ``flock`` (exclusive, non-blocking) by the process that
writes the run (rank 0 of a distributed run; the other ranks of the same job only
read), and holds that process's pid, host, start time and command line. The operating
system releases the lock when the process ends, however it ends (``kill -9`` included),
so a stale lock file never blocks anyone: only a *living* holder does, and the error
names it.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from ..errors import RunDirError

__all__ = ["RunLock"]

LOCK_NAME = ".lock"


class RunLock:
    """The lock of one run directory (context manager; :meth:`acquire` / :meth:`release`)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fh = None

    def acquire(self) -> RunLock:
        """Take the lock or raise a one-line :class:`RunDirError` naming the process holding it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open while the run trains
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _describe(fh.read())
            fh.close()
            raise RunDirError(
                f"{self.path.parent}: another cryohet process is writing this run ({holder}); "
                "wait for it to finish or stop it, or choose another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        fh.write(json.dumps(info))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that left no details"
