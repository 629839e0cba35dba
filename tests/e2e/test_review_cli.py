"""`vaultline review ...` and `vaultline status` as an operator types them, against a stack
started with `vaultline run` in another process: decisions go through the stack's Postgres
and outbox, and its relay puts each one on the stream once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.test_run import clean_env, start, wait_runtime
from tests.images import Placement, face_png
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import connect, history_subject, read_events

pytestmark = pytest.mark.e2e

# The review commands run through review_cli's own entry point, which has the same argv shape
# as `vaultline review ...` / `vaultline status`. Once cli.py registers them, this becomes
# ["-m", "vaultline"].
CLI = ["-m", "vaultline"]


def vl(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def ingest(path: Path, data_dir: Path, env: dict[str, str]) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "vaultline", "ingest", str(path), "--creator", "elena", "--json", "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # `ingest --json` currently interleaves structlog lines on stdout: take the JSON row.
    [row] = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return row["content_id"]


async def stream_types(nats_url: str, cid: str) -> list[str]:
    nc, js = await connect(nats_url)
    try:
        return [se.event.type async for se in read_events(js, subject=history_subject(cid))]
    finally:
        await nc.close()


@pytest.mark.timeout(300)
async def test_review_from_the_command_line(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    env = clean_env() | {"VAULTLINE_ADMIN_PORT": "0"}
    proc = start(data_dir, env, log)
    try:
        rt = await wait_runtime(proc, data_dir, log)
        d = str(data_dir)
        ids = []
        for i, placement in enumerate((Placement("astronaut"), Placement("grace_hopper", width=700))):
            image = tmp_path / f"ComfyUI_0000{i}_.png"
            image.write_bytes(face_png([placement]))
            ids.append(ingest(image, data_dir, env))
        a, b = ids
        db = await asyncpg.connect(rt["database_url"])
        try:
            await wait_until(
                lambda: db.fetchval("SELECT count(*) = 2 FROM content WHERE status = 'in_review'"),
                timeout=120, what="both images to reach review",
            )  # fmt: skip
        finally:
            await db.close()

        listed = vl("review", "list", "--json", "--data-dir", d, env=env)
        assert listed.returncode == 0, listed.stderr
        items = json.loads(listed.stdout)
        assert {i["id"] for i in items} == {a, b} and all(i["status"] == "in_review" for i in items)
        table = vl("review", "list", "--data-dir", d, env=env)
        assert table.returncode == 0 and "in_review" in table.stdout

        ok = vl("review", "approve", a, "--vault", "ppv", "--price", "1299", "--tags", "red,lingerie",
                "--category", "lingerie", "--data-dir", d, env=env)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert f"approved {a} → ppv at $12.99" in ok.stdout

        # One id already decided: that one fails with its reason, the other still goes through.
        mixed = vl("review", "approve", a, b, "--vault", "feed", "--json", "--data-dir", d, env=env)
        assert mixed.returncode == 1
        results = {r["id"]: r for r in json.loads(mixed.stdout)}
        assert results[a]["ok"] is False and results[a]["status"] == 409 and "already decided" in results[a]["error"]
        assert results[b]["ok"] is True and results[b]["item"]["vault"] == "feed"
        assert a in mixed.stderr and "409" in mixed.stderr

        missing = str(uuid.uuid4())
        rej = vl("review", "reject", missing, "--reason", "blurry", "--data-dir", d, env=env)
        assert rej.returncode == 1 and missing in rej.stderr and "404" in rej.stderr

        status = vl("status", "--json", "--data-dir", d, env=env)
        assert status.returncode == 0, status.stderr
        counts = json.loads(status.stdout)
        # The stack's upload handler may already have filed them with the local platform.
        stages = counts["stages"]
        assert stages["approved"] + stages["uploaded"] == 2 and stages["in_review"] == 0, counts
        assert {c["creator"] for c in counts["counts"]} == {"elena"}
        assert sum(c["count"] for c in counts["counts"]) == 2
        human = vl("status", "--data-dir", d, env=env)
        assert human.returncode == 0 and "elena" in human.stdout, human.stdout

        assert json.loads(vl("review", "list", "--json", "--data-dir", d, env=env).stdout) == []

        # The stack's relay publishes each decision once.
        for cid in (a, b):
            types = await wait_until(
                lambda cid=cid: _if_approved(stream_types(rt["nats_url"], cid)), what="the approval on the stream"
            )
            assert types.count("image.approved") == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


async def _if_approved(types_coro) -> list[str] | None:
    types = await types_coro
    return types if "image.approved" in types else None


def test_review_commands_without_a_running_stack_say_how_to_start_one(tmp_path):
    env = clean_env()
    for args in (("review", "list"), ("review", "approve", str(uuid.uuid4()), "--vault", "feed"), ("status",)):
        r = vl(*args, "--data-dir", str(tmp_path), env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "no running vaultline" in r.stderr and "vaultline run" in r.stderr
    bad = vl("review", "approve", str(uuid.uuid4()), "--vault", "vip", "--data-dir", str(tmp_path), env=env)
    assert bad.returncode == 2 and "unknown vault" in bad.stderr
