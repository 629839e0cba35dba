"""`vaultline run` in a subprocess, driven the way an operator would: over sockets and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import nats
import psutil
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaultline", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def clean_env() -> dict[str, str]:
    # VAULTLINE_PG_SYSTEM_DIR is the machine's (where a root run keeps its clusters), not the stack's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTLINE_") or k == "VAULTLINE_PG_SYSTEM_DIR"}
    return env | {"PYTHONUNBUFFERED": "1"}


def start(data_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaultline", "run", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115 - closed with the process
    )


async def wait_runtime(proc: subprocess.Popen, data_dir: Path, log: Path) -> dict:
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"vaultline run exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        path = data_dir / "runtime.json"
        return json.loads(path.read_text()) if path.exists() else None

    return await wait_until(ready, timeout=90, what="runtime.json")


@dataclass
class RunningStack:
    rt: dict  # runtime.json
    data_dir: Path
    token: str
    env: dict[str, str]  # for CLI subprocesses against this stack

    def admin(self, **kw) -> httpx.AsyncClient:
        """An HTTP client on the admin app with the admin token (httpx keywords in `kw`)."""
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.rt["admin_url"], headers=auth, **kw)


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path):
    """`vaultline run` on tmp_path/data with no configuration, as an operator starts it. On
    exit it must stop cleanly on SIGTERM and leave no server process behind."""
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    env = clean_env() | {"VAULTLINE_ADMIN_PORT": "0"}
    proc = start(data_dir, env, log)
    try:
        rt = await wait_runtime(proc, data_dir, log)
        yield RunningStack(rt, data_dir, (data_dir / "admin-token").read_text().strip(), env)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert leftovers(data_dir) == []


def leftovers(data_dir: Path) -> list[str]:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in cmd and ("nats-server" in cmd or "postgres" in cmd):
            found.append(cmd)
    return found


def image_generated(content_id: uuid.UUID) -> tuple[str, bytes, str]:
    from vaultline.events import new_event

    e = new_event(
        "image.generated",
        creator="elena",
        key=content_id,
        payload={
            "storage_key": f"elena/1_raw/{content_id}.png",
            "sha256": "c" * 64,
            "phash": "8000000000000000",
            "size_bytes": 2048,
            "original_filename": "ComfyUI_00007_.png",
        },
    )
    return e.subject, e.to_json(), str(e.event_id)


async def test_run_stack_end_to_end(tmp_path):
    data_dir = tmp_path / "data"
    log = tmp_path / "run.log"
    env = clean_env()
    proc = start(data_dir, env, log)
    try:
        rt = await wait_runtime(proc, data_dir, log)
        assert set(rt) >= {"nats_url", "database_url", "admin_url", "pid"}
        assert rt["pid"] == proc.pid
        assert rt["admin_url"].startswith("http://127.0.0.1:")
        token = (data_dir / "admin-token").read_text().strip()
        assert (data_dir / "admin-token").stat().st_mode & 0o077 == 0
        assert data_dir.stat().st_mode & 0o777 == 0o700

        # The embedded nats-server wants the credentials runtime.json (0600) carries.
        assert (data_dir / "runtime.json").stat().st_mode & 0o777 == 0o600
        nats_password = (data_dir / "nats" / "password").read_text().strip()
        assert rt["nats_url"].startswith(f"nats://vaultline:{nats_password}@127.0.0.1:")
        assert nats_password not in log.read_text()  # the summary shows nats://vaultline:***@...
        anonymous = "nats://" + rt["nats_url"].rsplit("@", 1)[1]
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(anonymous, max_reconnect_attempts=0, allow_reconnect=False)

        async with httpx.AsyncClient(base_url=rt["admin_url"]) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/ready")).status_code == 401
            assert (await http.get("/ready", headers={"Authorization": "Bearer wrong"})).status_code == 403
            ready = await http.get("/ready", headers={"Authorization": f"Bearer {token}"})
            assert ready.status_code == 200 and ready.json()["ready"] is True

        # An event published with plain nats-py reaches the content table.
        content_id = uuid.uuid4()
        subject, body, event_id = image_generated(content_id)
        nc = await nats.connect(rt["nats_url"])
        ack = await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": event_id})
        await nc.close()
        assert ack.stream == "EVENTS"
        # No file stands behind this hand-made event, so the crop handler reports it missing.
        db = await asyncpg.connect(rt["database_url"])
        try:
            row = await wait_until(
                lambda: db.fetchrow("SELECT * FROM content WHERE id=$1 AND status='crop_failed'", content_id),
                what="content row",
            )
        finally:
            await db.close()
        assert row["original_filename"] == "ComfyUI_00007_.png" and "missing" in row["error"]

        history = cli("history", str(content_id), "--json", "--data-dir", str(data_dir), env=env)
        assert history.returncode == 0, history.stderr
        rows = [json.loads(line) for line in history.stdout.splitlines()]
        assert [r["type"] for r in rows] == ["image.generated", "image.crop_failed"]
        assert rows[0]["event_id"] == event_id and rows[1]["causation_id"] == event_id

        # A second process joins the tracker's durable consumer (scale-out) and stops cleanly.
        worker_log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "vaultline", "worker", "tracker", "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(worker_log, "ab"),  # noqa: SIM115
        )  # fmt: skip
        try:
            await wait_until(lambda: "worker tracker running" in worker_log.read_text(), timeout=60, what="worker")
            nc = await nats.connect(rt["nats_url"])
            info = await nc.jetstream().consumer_info("EVENTS", "tracker")
            await nc.close()
            assert info.num_waiting >= 1  # pull requests from the stack and from the worker
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, worker_log.read_text()[-2000:]

        second = cli("run", "--data-dir", str(data_dir), env=env)
        assert second.returncode == 1
        assert "already running" in second.stderr and str(proc.pid) in second.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not (data_dir / "runtime.json").exists()
        assert leftovers(data_dir) == []

        # Restarting on the same directory keeps everything.
        proc = start(data_dir, env, log)
        rt = await wait_runtime(proc, data_dir, log)
        db = await asyncpg.connect(rt["database_url"])
        try:
            assert await db.fetchval("SELECT status FROM content WHERE id=$1", content_id) == "crop_failed"
        finally:
            await db.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert leftovers(data_dir) == []


def test_commands_without_a_running_stack_say_how_to_start_one(tmp_path):
    r = cli("history", str(uuid.uuid4()), "--data-dir", str(tmp_path), env=clean_env())
    assert r.returncode == 2
    assert "no running vaultline" in r.stderr and "vaultline run" in r.stderr


async def test_an_image_dropped_into_the_inbox_reaches_review(tmp_path):
    """What an operator does after `make run` with no configuration at all."""
    from tests.images import Placement, face_png

    async with running_stack(tmp_path) as stack:
        data_dir = stack.data_dir
        assert f"watching  {data_dir / 'inbox'}" in (tmp_path / "run.log").read_text()
        (data_dir / "inbox" / "ComfyUI_00003_.png").write_bytes(face_png([Placement("astronaut")]))
        async with stack.admin() as http:

            async def in_review():
                items = (await http.get("/api/content", params={"status": "in_review"})).json()["items"]
                return items or None

            (item,) = await wait_until(in_review, timeout=90, what="the dropped image in review")
        assert item["original_filename"] == "ComfyUI_00003_.png" and item["face_found"] is True
        assert (data_dir / "library" / "default" / "3_review").iterdir().__next__().name.endswith(".png")
