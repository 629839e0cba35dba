"""From a ComfyUI folder (and the HTTP hook) to an image waiting in review, on real servers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from tests.images import Placement, comfy_text, face_png
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import history_subject, read_events
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app
from vaultline.entrypoints.drivers.comfy_folders import watch_comfy_folders

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline_settings(settings, tmp_path, comfy_dir):
    config = tmp_path / "vaultline.toml"
    config.write_text(f'[creators.elena]\ncrop_mode = "chin"\ncomfy_output_dirs = ["{comfy_dir}"]\n')
    return settings.model_copy(update={"config_file": config, "default_creator": "elena"})


async def write_slowly(path: Path, data: bytes, chunks: int = 6) -> None:
    """ComfyUI writes straight to the final name; the watcher must wait for the last byte."""
    step = len(data) // chunks + 1
    with path.open("wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            await asyncio.sleep(0.15)  # the scenario: a slow writer, not synchronisation


async def events_of(js, content_id) -> list[str]:
    return [se.event.type async for se in read_events(js, subject=history_subject(str(content_id)))]


async def test_watched_folder_to_review_exactly_once(pipeline_settings, pool, comfy_dir):
    results: list = []
    image = face_png([Placement("astronaut")], text=comfy_text(seed=777))
    async with Runtime(pipeline_settings, ["tracker", "crop"]) as rt:
        rt.add_task(watch_comfy_folders(rt, "elena", [comfy_dir], on_result=lambda p, r: results.append(r)))
        await write_slowly(comfy_dir / "ComfyUI_00001_.png", image)
        await wait_until(lambda: len(results) == 1, what="the watcher to ingest the file")
        cid = results[0].content_id
        row = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='in_review'", cid),
            timeout=60, what="the crop to reach review",
        )  # fmt: skip
        # The same bytes again, under another name: seen, and refused as a duplicate.
        (comfy_dir / "sub").mkdir()
        await write_slowly(comfy_dir / "sub" / "copy.png", image)
        await wait_until(lambda: len(results) == 2, what="the duplicate to be seen")
        assert results[1].status == "duplicate" and results[1].content_id == cid
        assert await events_of(rt.ports.js, cid) == ["image.generated", "image.cropped"]
        library = pipeline_settings.library_root
        name = f"ComfyUI_00001_--{cid}.png"
        assert (library / "elena" / "1_raw" / name).read_bytes() == image
        assert (library / "elena" / "2_cropped" / name).exists()
        assert (library / "elena" / "3_review" / name).exists()
        assert (comfy_dir / "ComfyUI_00001_.png").exists()  # copied, never moved from ComfyUI
    assert row["crop_mode_used"] == "chin" and row["face_found"] is True
    assert row["comfy"]["seed"] == 777
    assert row["original_filename"] == "ComfyUI_00001_.png"
    review = (library / "elena" / "3_review" / name).read_bytes()
    assert b"prompt" not in review and b"workflow" not in review  # the upload copy leaks no recipe


async def test_http_hook_ingests_refuses_and_rejects_bad_files(pipeline_settings, pool, comfy_dir, tmp_path):
    async with Runtime(pipeline_settings, ["tracker", "crop"]) as rt:
        ctx = AdminContext(token="t0k", services=Services.from_runtime(rt))
        server = AdminServer(create_app(ctx))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        auth = {"Authorization": "Bearer t0k"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            image = face_png([Placement("grace_hopper", width=700)])
            files = {"file": ("hook.png", image, "image/png")}
            assert (await http.post("/api/ingest", files=files)).status_code == 401
            r = await http.post("/api/ingest", files=files, data={"creator": "elena", "mode": "no_face"}, headers=auth)
            assert r.status_code == 201, r.text
            cid = uuid.UUID(r.json()["content_id"])
            row = await wait_until(
                lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='in_review'", cid), timeout=60
            )
            assert row["crop_mode_used"] == "no_face"
            again = await http.post("/api/ingest", files=files, headers=auth)
            assert again.status_code == 200 and again.json()["status"] == "duplicate"

            outside = tmp_path / "elsewhere.png"
            outside.write_bytes(image)
            r = await http.post("/api/ingest", json={"path": str(outside)}, headers=auth)
            assert r.status_code == 403
            r = await http.post("/api/ingest", json={"path": str(comfy_dir / "../../elsewhere.png")}, headers=auth)
            assert r.status_code == 403  # .. cannot escape the root
            r = await http.post("/api/ingest", files=files, data={"mode": "sideways"}, headers=auth)
            assert r.status_code == 400 and "mode" in r.json()["error"]

            inside = comfy_dir / "broken.png"
            inside.write_bytes(image[: len(image) // 3])  # truncated
            r = await http.post("/api/ingest", json={"path": str(inside), "creator": "elena"}, headers=auth)
            assert r.status_code == 201
            bad = uuid.UUID(r.json()["content_id"])
            row = await wait_until(
                lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='crop_failed'", bad), timeout=60
            )
        await server.stop()
    rejected = pipeline_settings.library_root / "elena" / "rejected" / f"broken--{bad}.png"
    assert rejected.exists()
    assert "truncated" in row["error"]
    assert rejected.with_name(rejected.name + ".reason.txt").read_text().strip() == row["error"]
