"""The folder-watcher ingest loop under faults (real nats-server + PostgreSQL): a failed ingest
is retried until it goes through, and a file that never becomes an image is moved aside with
its reason and listed as a problem."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.images import Placement, face_png
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import connect, read_events
from vaultline.adapters.db.problems import recent_problems
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app
from vaultline.entrypoints.cli import app as cli_app
from vaultline.entrypoints.drivers.comfy_folders import watch_comfy_folders

pytestmark = pytest.mark.integration


async def test_an_ingest_that_fails_while_nats_is_down_is_retried_until_it_lands(settings, fresh_nats, comfy_dir):
    s = settings.model_copy(update={"nats_url": fresh_nats.url, "default_creator": "elena"})
    results, retries = [], []
    async with Runtime(s, []) as rt:
        rt.add_task(watch_comfy_folders(
            rt, "elena", [comfy_dir], on_result=lambda p, r: results.append(r),
            on_retry=lambda p, e: retries.append(e), retry_base=0.2, retry_cap=1.0,
        ))  # fmt: skip
        fresh_nats.stop()  # NATS briefly down
        (comfy_dir / "ComfyUI_00001_.png").write_bytes(face_png([Placement("astronaut")]))
        await wait_until(lambda: retries, timeout=30, what="a failed ingest attempt")
        assert results == []  # not reported done
        fresh_nats.start()
        await wait_until(lambda: results, timeout=60, what="the ingest to go through after NATS returned")
    (result,) = results
    assert result.status == "ingested"
    nc, js = await connect(fresh_nats.url)
    try:
        events = [se.event async for se in read_events(js, subject="image.generated.>")]
    finally:
        await nc.close()
    assert [e.key for e in events] == [str(result.content_id)]


async def test_files_that_never_become_images_move_to_rejected_with_a_reason(settings, pool, comfy_dir):
    s = settings.model_copy(update={"default_creator": "elena", "watch_reject_after_s": 1.0})
    png = face_png([Placement("astronaut")])
    bad = {"empty.png": b"", "garbage.png": b"this is not an image at all" * 10, "cut.png": png[: len(png) // 2]}
    async with Runtime(s, []) as rt:
        rt.add_task(watch_comfy_folders(rt, "elena", [comfy_dir]))
        for name, data in bad.items():
            (comfy_dir / name).write_bytes(data)
        await wait_until(lambda: _all_listed(pool, bad), timeout=20, what="three problems")
        ctx = AdminContext(token="t0k", services=Services.from_runtime(rt))
        server = AdminServer(create_app(ctx))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get("/api/problems")).status_code == 401
            r = await http.get("/api/problems", headers={"Authorization": "Bearer t0k"})
        await server.stop()
    assert r.status_code == 200, r.text
    problems = r.json()["problems"]
    rejected = s.library_root / "elena" / "rejected"
    for name, data in bad.items():
        assert not (comfy_dir / name).exists()
        assert (rejected / name).read_bytes() == data
        assert "not a complete image" in (rejected / f"{name}.reason.txt").read_text()
    by_path = {Path(p["path"]).name: p for p in problems}
    assert set(by_path) == set(bad)
    assert by_path["cut.png"]["moved_to"] == "elena/rejected/cut.png" and by_path["cut.png"]["creator"] == "elena"
    # The operator sees the same list in `vaultline status`.
    env = {"VAULTLINE_DATABASE_URL": s.database_url}
    status = await asyncio.to_thread(CliRunner().invoke, cli_app, ["status", "--json", "--data-dir", str(s.data_dir)], env=env)
    assert status.exit_code == 0, status.output
    assert {Path(p["path"]).name for p in json.loads(status.stdout)["problems"]} == set(bad)
    human = await asyncio.to_thread(CliRunner().invoke, cli_app, ["status", "--data-dir", str(s.data_dir)], env=env)
    assert "problems" in human.stdout and "garbage.png" in human.stdout


async def _all_listed(pool, bad) -> list | None:
    problems = await recent_problems(pool)
    return problems if len(problems) == len(bad) else None
