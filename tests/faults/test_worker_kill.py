"""kill -9 of a crop worker and of an upload worker in the middle of a 200-image run against the
test Fanvue (real HTTP): replacements take the work over, every image is uploaded exactly once,
the platform has exactly 200 media, the stream one event of each step per image, and the
projections rebuild from the stream with no difference.

The 200 images belong to 10 creators (20 each): Fanvue's budget is 200 requests / 60 s per
creator (~7 requests per upload), so one creator's 200 uploads would spend five minutes waiting
on the budget, which is what it is for, not what this test is about. The workers are
`vaultline worker crop|upload` processes; this process plays ComfyUI (ingest), the reviewer
(review use case -> outbox) and runs tracker, library, dlq and the relay."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.children import Workers
from tests.fanvue_server import FanvueTestServer
from tests.faults.pipeline import Reviewer, assert_exactly_once, at_least, rebuild_report, settled, small_face_png
from tests.waiting import wait_until
from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenSet, load_cipher
from vaultline.bootstrap import Ingestor, Runtime
from vaultline.settings import Settings

IMAGES = 200
CREATORS = tuple(f"persona{i}" for i in range(10))


async def ack_pending(js, consumer: str) -> int:
    return (await js.consumer_info("EVENTS", consumer)).num_ack_pending


@pytest.mark.timeout(240)
async def test_killed_crop_and_upload_workers_lose_nothing_and_upload_nothing_twice(
    fresh_nats, migrated_db, pool, tmp_path
):
    settings = Settings(nats_url=fresh_nats.url, database_url=migrated_db, data_dir=tmp_path / "data")
    with FanvueTestServer() as fanvue:
        store = PostgresTokenStore(pool, load_cipher(settings.data_dir))
        for creator in CREATORS:  # logged in: these creators upload to Fanvue
            await store.save(creator, TokenSet.from_token_response(fanvue.issue_tokens(), now=time.time()))
        workers = Workers(settings, {"VAULTLINE_FANVUE_BASE_URL": fanvue.base_url}, tmp_path / "workers.log")
        producer = None
        try:
            async with Runtime(settings, ["tracker", "library", "analytics", "dlq"], concurrency=4) as rt, Reviewer(pool):
                js = rt.ports.js
                crop = workers.start("crop", "-c", "2")
                upload = workers.start("upload", "-c", "4")
                # ComfyUI produces while the run goes on, as it does.
                producer = asyncio.create_task(ingest(Ingestor(rt.ports), IMAGES))

                # The crop worker dies with a message in hand (delivered, not acked).
                await wait_until(lambda: _cropped_and_busy(pool, js, 30) or workers.died(), timeout=120,
                                 what="the crop worker to be busy after 30 crops")  # fmt: skip
                await workers.kill(crop)
                crop_held = await ack_pending(js, "crop")
                workers.start("crop", "-c", "2")

                # The upload worker dies mid-upload: its requests wait at "complete" on the platform.
                await wait_until(lambda: at_least(pool, "uploaded", 20) or workers.died(), timeout=120,
                                 what="20 uploads")  # fmt: skip
                gate = fanvue.hold("media.complete_upload")
                await wait_until(lambda: gate.entered >= 1 or workers.died(), timeout=30, what="an upload mid-way")
                await workers.kill(upload)
                upload_held = await ack_pending(js, "upload")
                gate.release()  # what reached Fanvue completes there; the dead worker never hears of it
                workers.start("upload", "-c", "4")

                ids = await producer
                await wait_until(lambda: at_least(pool, "uploaded", IMAGES) or workers.died(), timeout=150,
                                 interval=0.5, what=f"{IMAGES} uploads")  # fmt: skip
                await wait_until(lambda: settled(js, pool, ("tracker", "library", "analytics", "crop", "upload", "dlq")),
                                 timeout=30, what="the outbox and every consumer to be done")  # fmt: skip
                by_type = await assert_exactly_once(js, pool, ids)
                report = await rebuild_report(settings)
        finally:
            if producer is not None:
                producer.cancel()  # a no-op once it is done
            await workers.stop()

    assert crop_held >= 1, "the crop worker must have died holding a message"
    assert upload_held >= 1, "the upload worker must have died holding a message"
    assert gate.entered >= 1
    # The platform: one completed media per image, each in its creator's vault folder, once.
    assert len(fanvue.completions) == IMAGES
    ready = {m["uuid"] for m in fanvue.media.values() if m["status"] == "ready"}
    filed = [m for f in fanvue.folders.values() for m in f["media"]]
    assert len(filed) == len(set(filed)) == IMAGES and set(filed) == ready
    media = {uuid.UUID(se.event.key): se.event.payload.media_uuid for se in by_type["media.uploaded"]}
    assert set(media.values()) == ready
    for se in by_type["media.uploaded"]:
        p = se.event.payload
        assert p.media_uuid in fanvue.folders[p.vault_folder]["media"] and p.vault_folder.startswith(se.event.creator)
    assert report["events"] == 4 * IMAGES and report["tables"]["content"]["live_rows"] == IMAGES


async def ingest(ingestor: Ingestor, n: int) -> set[uuid.UUID]:
    ids = set()
    for i in range(n):
        r = await ingestor.ingest_bytes(small_face_png(i), filename=f"ComfyUI_{i:05d}_.png", source="test",
                                        creator=CREATORS[i % len(CREATORS)])  # fmt: skip
        assert r.status == "ingested"
        ids.add(r.content_id)
    return ids


async def _cropped_and_busy(pool, js, n: int) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM content WHERE status <> 'generated'")
    return done >= n and await ack_pending(js, "crop") >= 1
