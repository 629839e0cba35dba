"""PostgreSQL stopped for 20 s in the middle of a run (a PostgreSQL of this test's own): the
handlers that need it fail, nak with a growing delay and keep their messages (none reaches
max_deliver with the production retry settings, none is acked unprocessed); the watcher keeps
retrying the ingest of files written meanwhile; when PostgreSQL is back the run completes with
every image uploaded exactly once, and the projections rebuild from the stream with no
difference.

40 images (20 before the outage; 5 approved and 5 ingested just before it, held for the
outage by pausing the upload and the crop consumer; 5 written during it; 5 after), uploaded to
the local platform, every handler in this process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.faults.pipeline import (
    HANDLERS,
    Comfy,
    assert_exactly_once,
    at_least,
    settled,
    rebuild_report,
    running_pipeline,
)
from tests.waiting import wait_until
from vaultline.adapters.bus.topology import CONSUMERS
from vaultline.adapters.db import create_pool, migrate
from vaultline.adapters.embedded.postgres import EmbeddedPostgres

OUTAGE_S = 20.0


PAUSED_UNTIL = "2100-01-01T00:00:00Z"  # until resumed


async def approved_and_published(pool: Any, comfy: Comfy, images: range) -> bool:
    """Images `images` of `comfy` are approved and their image.approved is in the stream."""
    paths = [comfy.path(i) for i in images]
    if not all(p in comfy.results for p in paths):
        return False
    ids = [comfy.results[p].content_id for p in paths]
    n = await pool.fetchval("SELECT count(*) FROM content WHERE id = ANY($1) AND status = 'approved'", ids)
    return n == len(ids) and not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")


def transient_failures() -> dict[str, float]:
    """Messages each handler of this process failed and nakked so far (its /metrics counter)."""
    return {h: REGISTRY.get_sample_value("vaultline_events_failed_total", {"handler": h, "kind": "transient"}) or 0.0
            for h in HANDLERS}  # fmt: skip


@pytest.mark.timeout(200)
async def test_postgres_down_for_20s_mid_run_naks_with_backoff_and_the_run_completes(fresh_nats, pg_data_dir, tmp_path):
    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    url = await asyncio.to_thread(pg.start)
    pool = None
    try:
        await migrate(url)
        pool = await create_pool(url)
        comfy = Comfy(tmp_path / "comfy")
        settings = comfy.settings(fresh_nats.url, url, tmp_path / "data")
        async with running_pipeline(settings, comfy, pool) as rt:
            js = rt.ports.js
            comfy.write(range(20))
            await wait_until(lambda: at_least(pool, "uploaded", 8), timeout=90, what="8 uploads")

            # Work held for the outage, whatever the machine's speed (on a fast one everything
            # written so far is uploaded and tracked before PostgreSQL stops): 5 approved images
            # the upload consumer has not been given, 5 ingested ones the crop consumer has not.
            crop, upload = CONSUMERS["crop"], CONSUMERS["upload"]
            await js.pause_consumer(upload.stream, upload.name, PAUSED_UNTIL)
            comfy.write(range(20, 25))
            await wait_until(lambda: approved_and_published(pool, comfy, range(20, 25)), timeout=30,
                             what="5 more approved (upload paused)")  # fmt: skip
            await js.pause_consumer(crop.stream, crop.name, PAUSED_UNTIL)
            comfy.write(range(25, 30))
            await wait_until(lambda: len(comfy.results) >= 30, timeout=30, what="5 more ingested (crop paused)")

            failed_before = transient_failures()
            await asyncio.to_thread(pg.stop)
            stopped = time.monotonic()
            for spec in (crop, upload):  # their work meets handlers without PostgreSQL (crop needs none)
                await js.resume_consumer(spec.stream, spec.name)
            comfy.write(range(30, 35))
            await wait_until(lambda: len(comfy.retries) >= 1, timeout=OUTAGE_S, what="an ingest to fail meanwhile")
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped))  # the outage lasts 20 s: the scenario
            failed = {h: n - failed_before[h] for h, n in transient_failures().items()}
            await asyncio.to_thread(pg.start)  # same port: pools reconnect to the URL they have
            comfy.write(range(35, 40))

            await wait_until(lambda: at_least(pool, "uploaded", 40), timeout=120, interval=0.2, what="40 uploads")
            await wait_until(lambda: settled(js, pool, HANDLERS), timeout=30, what="the outbox and the consumers")
            by_type = await assert_exactly_once(js, pool, comfy.ids)  # also: no dead letter, nothing skipped
        report = await rebuild_report(settings)
    finally:
        if pool is not None:
            await pool.close()
        await asyncio.to_thread(pg.stop)

    # The handlers that need PostgreSQL failed and nakked; the crop handler did not need it.
    assert failed["tracker"] >= 1 and failed["upload"] >= 1 and failed["crop"] == 0, failed
    # With a growing delay (0.5 s, 1 s, 2 s, ...) a message fails at most 6 times in 20 s; a
    # tight retry loop would fail thousands of times.
    read = len(by_type["image.approved"]) + sum(len(v) for v in by_type.values())  # upload + tracker
    assert sum(failed.values()) <= 6 * read, (failed, read)
    assert len(comfy.retries) >= 1 and len(comfy.ids) == 40
    assert report["events"] == 4 * 40
