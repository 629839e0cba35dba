"""Child Python processes for the tests that need a real second process: a script that talks back
on stdout and runs until its stdin is closed (a lock holder, a parent of embedded servers), a
`vaultline worker`, a `vaultline` CLI command as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def python_child(script: str, *args: str) -> subprocess.Popen[str]:
    """Start `python -c script args...` with stdin and stdout as text pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def stack_env(settings) -> dict[str, str]:
    """This environment without its VAULTLINE_* variables, pointed at the settings' NATS and
    PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTLINE_")}
    return env | {"VAULTLINE_NATS_URL": settings.nats_url, "VAULTLINE_DATABASE_URL": settings.database_url}


def start_worker(name: str, settings, env_extra: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """`vaultline worker NAME` in its own process against the settings' NATS and PostgreSQL, with
    no VAULTLINE_* of the test runner's environment; stderr appended to `log`."""
    env = stack_env(settings) | {"PYTHONUNBUFFERED": "1", **env_extra}
    with open(log, "ab") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "vaultline", "worker", name, "--data-dir", str(settings.data_dir), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


def worker_died(proc: subprocess.Popen, log: Path) -> bool:
    """For wait_until conditions: raise with the log's tail when the worker exited, else False."""
    if proc.poll() is not None:
        raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return False


class Workers:
    """The `vaultline worker` processes of a test (stderr of all in `log`): start, kill -9,
    `died()` for wait_until conditions (raises with the log when one that was not killed on
    purpose exited), `stop()` (SIGTERM to the living, waits for them)."""

    def __init__(self, settings, env_extra: dict[str, str], log: Path) -> None:
        self.settings, self.env_extra, self.log = settings, env_extra, log
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        self.running.append(start_worker(name, self.settings, self.env_extra, self.log, *args))
        return self.running[-1]

    async def kill(self, proc: subprocess.Popen) -> None:
        self.running.remove(proc)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)

    def died(self) -> bool:
        return any(worker_died(p, self.log) for p in self.running)

    async def stop(self) -> None:
        await stop_workers(self.running)


async def stop_workers(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to the living, then wait; one that does not stop in 30 s is killed (never left
    running after a test)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.to_thread(p.wait, 30)
        except subprocess.TimeoutExpired:
            p.kill()
            await asyncio.to_thread(p.wait)


@dataclass
class Result:
    exit_code: int
    stdout: str
    output: str  # stdout + stderr


async def vl(settings, *args: str) -> Result:
    """The CLI as an operator runs it: its own process (logs on stderr, JSON on stdout)."""
    argv = [sys.executable, "-m", "vaultline", *args, "--data-dir", str(settings.data_dir)]
    p = await asyncio.to_thread(subprocess.run, argv, env=stack_env(settings), capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    return Result(p.returncode, p.stdout, p.stdout + p.stderr)
