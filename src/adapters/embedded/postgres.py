"""EmbeddedPostgres: PostgreSQL 16 binaries from the pgserver wheel, loopback TCP with a
generated superuser password (trust on TCP would let any local user run code as the server).

Running as root: PostgreSQL refuses to, so it runs as an unprivileged system user (`pgserver`,
VAULTLINE_PG_SYSTEM_USER, created if missing). That user must reach its cluster and the
binaries, and vaultline never changes the permissions of the operator's directories for it.
Instead everything the server touches lives under a directory vaultline owns,
VAULTLINE_PG_SYSTEM_DIR (default /var/lib/vaultline, root-owned 0711):

    /var/lib/vaultline/pg-<digest>/         a copy of the wheel's binaries (hard links where
                                            possible), readable by everyone
    /var/lib/vaultline/<hash>/pgdata        the cluster, owned by the system user, 0700
    /var/lib/vaultline/<hash>/data-dir      which vaultline data dir it belongs to

and DATA/postgres/pgdata-location names the cluster, so a moved data dir keeps it. The password,
postgres.log and everything else stay in the data dir, which only root opens. Ownership and
modes are only ever changed on what vaultline just created, through O_NOFOLLOW descriptors.
A cluster made by an earlier version in DATA/postgres/pgdata is used where it is.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from vaultline.adapters.embedded import (
    ChildServer,
    EmbeddedServerError,
    alive,
    free_port,
    log_tail,
    parent_death_preexec,
    port_is_free,
    stop_process,
    wait_for,
)
from vaultline.adapters.private_files import load_or_create_secret, write_private

log = logging.getLogger(__name__)


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def site_packages() -> Path:
    """Where the pgserver wheel is installed: pgserver/pginstall/{bin,lib,share} and the
    pgserver.libs its programs load (rpath $ORIGIN/../../../pgserver.libs)."""
    # Locate the wheel without importing it: its import creates runtime dirs and warns.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver wheel is not installed (pip install 'pgserver==0.1.4')")
    return Path(list(spec.submodule_search_locations)[0]).parent


def pg_bin(name: str, root: Path | None = None) -> Path:
    """A PostgreSQL program of the wheel (or of its copy under `root`)."""
    bindir = (root or site_packages()) / "pgserver" / "pginstall" / "bin"
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


def system_dir() -> Path:
    """The directory vaultline owns for a PostgreSQL that runs as a system user (root only)."""
    return Path(os.environ.get("VAULTLINE_PG_SYSTEM_DIR") or "/var/lib/vaultline").absolute()


def _unreachable(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to `path` that `user` may not traverse, else None."""
    groups = {user.pw_gid} | {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    for d in reversed([path, *path.parents]):
        st = d.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return d
    return None


def _mkdir_owned(path: Path, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Create `path` (its parent must exist) and give it to uid:gid with `mode`; an existing
    path must be a real directory (not a symlink) already owned by uid, and is left as it is."""
    try:
        path.mkdir(mode=mode)
        created = True
    except FileExistsError:
        created = False
    try:
        fd = os.open(path, _NOFOLLOW_DIR)
    except OSError as e:
        raise EmbeddedServerError(f"{path} must be a directory, not a symlink or a file ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if created:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        elif st.st_uid != uid:
            raise EmbeddedServerError(f"{path} belongs to uid {st.st_uid}, expected uid {uid}; refusing to use it")
    finally:
        os.close(fd)


def _remove_abandoned_clusters(base: Path) -> None:
    """Delete clusters under `base` whose data dir was a temporary one (under the system temp
    dir: tests, benchmarks) and is gone, so nothing can start them again (their password lived
    there), and that no postgres process serves. Clusters of other data dirs are never touched."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for cluster in base.iterdir():
        marker = cluster / "data-dir"
        if cluster.is_symlink() or not marker.is_file():
            continue
        try:
            owner = Path(marker.read_text().strip())
        except OSError:
            continue
        if tmp not in owner.parents or owner.exists() or postgres_processes(cluster / "pgdata"):
            continue
        log.info("removing the cluster %s of the deleted temporary data dir %s", cluster, owner)
        shutil.rmtree(cluster, ignore_errors=True)  # rmtree does not follow symlinks


def _install_binaries(base: Path) -> Path:
    """A copy of the wheel's PostgreSQL under `base` that every user can read and run; made
    once per wheel (hard links where the source file is already world-readable, else copies)."""
    src = site_packages()
    postgres = src / "pgserver" / "pginstall" / "bin" / "postgres"
    try:
        stamp = f"{src}\0{postgres.stat().st_mtime_ns}"
    except OSError:
        pg_bin("postgres")  # the clear "not installed / not found" error
        raise
    dest = base / f"pg-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"
    if dest.is_dir() and not dest.is_symlink():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".pg-install-", dir=base))

    def link_or_copy(s: str, d: str) -> None:
        mode = os.lstat(s).st_mode
        readable = mode & stat.S_IROTH and (mode & stat.S_IXOTH or not mode & stat.S_IXUSR)
        if readable:
            try:
                os.link(s, d, follow_symlinks=False)
                return
            except OSError:
                pass  # another filesystem
        shutil.copy2(s, d, follow_symlinks=False)
        # Our copy: readable (and runnable when the original is) by the system user.
        os.chmod(d, stat.S_IMODE(mode) | stat.S_IROTH | stat.S_IRGRP | (0o011 if mode & stat.S_IXUSR else 0))

    try:
        for part in ("pgserver/pginstall/bin", "pgserver/pginstall/lib", "pgserver/pginstall/share", "pgserver.libs"):
            if (src / part).is_dir():
                shutil.copytree(src / part, tmp / part, symlinks=True, copy_function=link_or_copy)
        for d, _, _ in os.walk(tmp):  # directories we just created; os.walk follows no symlink
            os.chmod(d, 0o755)
        os.rename(tmp, dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # else a concurrent start installed the same copy first
            raise EmbeddedServerError(f"could not copy the PostgreSQL binaries to {dest}: {e}") from e
    else:
        log.info("PostgreSQL binaries for the system user installed in %s", dest)
    return dest


def postgres_processes(pgdata: Path | str) -> list[psutil.Process]:
    """Live postgres processes (postmaster and backends) serving `pgdata`: they all chdir into
    it; the postmaster also names it on its command line."""
    target = str(Path(pgdata).resolve())
    found = []
    for p in psutil.process_iter(["name", "cwd", "cmdline"]):
        if p.info["name"] != "postgres":
            continue
        if p.info["cwd"] == target or target in (p.info["cmdline"] or []):
            if alive(p):
                found.append(p)
    return found


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server (keeps credentials and query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class EmbeddedPostgres(ChildServer):
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
        self.log_path = self.data_dir / "postgres.log"
        self.password_path = self.data_dir / "superuser-password"
        self.durable = durable
        self.start_timeout = start_timeout
        self._requested_port = port
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._user = _postgres_system_user()
        self.pgdata = self._locate_cluster()
        self._bin_root: Path | None = None  # the system user's copy of the binaries (root only)

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
            elif self.port is not None and port_is_free(self.port):
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
            stop_process(proc, signal.SIGINT, timeout, "postgres")
        self._kill_leftovers()
        atexit.unregister(self.stop)


    # -- internals ----------------------------------------------------------------------

    @property
    def system_user(self) -> str | None:
        """The user PostgreSQL runs as when we are root (it refuses to run as root)."""
        return self._user.pw_name if self._user else None

    def _locate_cluster(self) -> Path:
        in_data_dir = self.data_dir / "pgdata"
        if self._user is None:
            return in_data_dir
        pointer = self.data_dir / "pgdata-location"
        if pointer.exists():
            return Path(pointer.read_text().strip())
        if (in_data_dir / "PG_VERSION").exists():
            return in_data_dir  # made by an earlier version: keep using it where it is
        key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return system_dir() / key / "pgdata"

    def _bin(self, name: str) -> Path:
        return pg_bin(name, self._bin_root)

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
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        uid, gid = self._ids()
        if self._user is not None:
            self._prepare_system_dirs()
        if not self.pgdata.exists():
            _mkdir_owned(self.pgdata, 0o700, uid, gid)
        elif self.pgdata.stat().st_uid != uid:
            raise EmbeddedServerError(
                f"{self.pgdata} belongs to uid {self.pgdata.stat().st_uid}, but PostgreSQL runs as uid {uid}; "
                f"fix with: chown -R {uid}:{gid} {self.pgdata}"
            )

    def _prepare_system_dirs(self) -> None:
        """Root only: the binaries and (for a new cluster) its directory under system_dir(),
        which the system user can reach without any change to the operator's directories."""
        assert self._user is not None
        base = system_dir()
        base.parent.mkdir(parents=True, exist_ok=True)
        _mkdir_owned(base, 0o711)
        _remove_abandoned_clusters(base)
        self._bin_root = _install_binaries(base)
        if self.pgdata != self.data_dir / "pgdata":
            if self.pgdata.parent.parent == base:
                _mkdir_owned(self.pgdata.parent, 0o711)
                write_private(self.pgdata.parent / "data-dir", f"{self.data_dir}\n")
            write_private(self.data_dir / "pgdata-location", f"{self.pgdata}\n")
        for target in (self.pgdata.parent, self._bin_root / "pgserver" / "pginstall" / "bin"):
            blocked = _unreachable(target, self._user)
            if blocked is not None:
                raise EmbeddedServerError(
                    f"PostgreSQL runs as system user {self._user.pw_name!r} (it refuses to run as root), "
                    f"which cannot reach {target}: {blocked} is not traversable for it. vaultline does not "
                    "change the permissions of your directories; point VAULTLINE_PG_SYSTEM_DIR at a "
                    "directory it can reach, or run vaultline as a normal user"
                )
        log.info(
            "running as root: PostgreSQL runs as system user %r with its cluster in %s and binaries in %s",
            self._user.pw_name, self.pgdata, self._bin_root,
        )

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServerError(f"{self.pgdata} is neither empty nor a PostgreSQL data directory")
        # No cluster uses it yet, so an empty file (a crash mid-write) is simply replaced.
        load_or_create_secret(self.password_path, lambda: secrets.token_hex(16), replace_empty=True)
        # initdb (running as the postgres user) reads the password from a file it can open.
        fd, pwfile = tempfile.mkstemp(prefix="vaultline-pw-")
        try:
            os.write(fd, self._password().encode() + b"\n")
            os.fchown(fd, *self._ids())
            os.close(fd)
            args = [
                str(self._bin("initdb")),
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
            str(self._bin("postgres")),
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
                preexec_fn=parent_death_preexec(signal.SIGINT),
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
            raise EmbeddedServerError(f"{exc}\n{log_tail(self.log_path)}") from exc
        except BaseException:
            self.stop()
            raise
        self.port = port

    def _ensure_database(self) -> None:
        sql = (
            f"SELECT 'CREATE DATABASE {self.database}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{self.database}')\\gexec\n"
        )
        # The password goes through the environment (readable by us and root only), never the
        # command line (/proc/PID/cmdline is world-readable).
        server = f"postgresql://{self.role}@127.0.0.1:{self.port}/postgres"
        res = subprocess.run(
            [str(self._bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server],
            input=sql,
            capture_output=True,
            text=True,
            env=self._env() | {"PGPASSWORD": self._password()},
            timeout=60,
        )
        if res.returncode != 0:
            raise EmbeddedServerError(f"could not create database {self.database!r}: {res.stderr.strip()}")


class _PortTaken(Exception):
    """Another process bound the port between free_port() and PostgreSQL's bind."""
