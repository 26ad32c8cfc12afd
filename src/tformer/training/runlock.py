"""One process at a time per run directory: an OS-level lock held for the life of a run.

``fcntl.flock`` on ``out/.tformer.lock``: the kernel drops the lock when its process ends however it ends
(``kill -9`` included), so a lock is never stale, and nothing has to be cleaned up after a crash. The file
also records who holds it (pid, host, start time), for the error a second process shows. The lock is
advisory: it keeps tformer processes apart (``train``, ``--resume``, ``--overwrite``, ``demo``), as git's
index lock keeps git commands apart. On a platform without ``fcntl`` (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".tformer.lock"


class RunInUseError(ConfigError):
    """The run directory is owned by another live process."""


def holder_info() -> dict[str, Any]:
    """What the lock file records about this process."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def in_use_error(out: Path) -> RunInUseError:
    """The error naming the process that holds the lock of ``out`` (as far as its lock file says)."""
    who = "another process"
    try:
        info = json.loads((out / LOCK_FILE).read_text())
        here = info["host"] == socket.gethostname()
        if not here or _alive(int(info["pid"])):  # else: the record of an earlier holder, not yet replaced
            who = f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder is still writing its record
        pass
    return RunInUseError(
        f"--out {out} is in use by a running tformer process ({who}); wait for it to finish or stop it "
        "(Ctrl-C or kill saves a checkpoint), then retry"
    )


class RunLock:
    """An exclusive lock on a run directory (created if missing; see the module docstring).

    ``created_dir`` / ``created_file`` say whether acquiring it created the directory or the lock file, so
    that a run whose start fails can remove them again. The holder's record is written by ``record`` once
    the run is accepted, so that a refused command changes no file.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self._fd: int | None = None
        self.created_dir = False
        self.created_file = False

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} exists and is not a directory")
        self.created_dir = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.created_file = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # O_CLOEXEC: Python's default (PEP 446)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.created_dir = self.created_file = False  # not ours to remove
                return False
        self._fd = fd
        return True

    def record(self) -> None:
        """Write this process's pid, host and start time into the lock file (for others' error messages)."""
        assert self._fd is not None, "record() needs the lock"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(holder_info()) + "\n").encode(), 0)

    def acquire(self) -> None:
        """Take the lock, or raise RunInUseError naming the live process that holds it."""
        if not self.try_acquire():
            raise in_use_error(self.out)

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it could let two processes lock two files)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        self.record()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
