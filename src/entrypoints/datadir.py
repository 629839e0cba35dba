"""The data directory of `vaultline run`: its exclusive lock and runtime.json (how CLI
commands find the running stack)."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


class AlreadyRunning(RuntimeError):
    """Another live process holds the data directory lock."""



def write_runtime_json(path: Path | str, **fields: Any) -> None:
    """Write `fields` as JSON atomically: readers see the old file or the new one, never half.

    The file is 0600 (mkstemp's mode): it holds URLs with credentials.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(fields, indent=2, sort_keys=True, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_data_dir(path: Path | str) -> Path:
    """Create the data directory 0700 when it does not exist yet: it holds secrets, the library
    (prompts, unpublished images) and the logs. An existing directory keeps its mode."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class DataDirLock:
    """Exclusive, non-blocking lock on DIR/.lock, held until release() or process exit.

    flock (not POSIX lockf) so that a second lock attempt in the same process also fails, and
    the kernel drops the lock when the holder dies: no stale-lock cleanup is ever needed.
    """

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.path = self.directory / ".lock"
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DataDirLock:
        if self._fd is not None:
            return self
        ensure_data_dir(self.directory)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"vaultline is already running on {self.directory} (pid {self._holder_pid()})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _holder_pid(self) -> str:
        # The holder writes its pid just after locking; give it a moment if we read in between.
        deadline = time.monotonic() + 0.5
        while True:
            try:
                text = self.path.read_text().strip()
            except OSError:
                text = ""
            if text or time.monotonic() >= deadline:
                return text or "unknown"
            time.sleep(0.01)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
