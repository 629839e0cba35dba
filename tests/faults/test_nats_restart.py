"""nats-server killed (SIGKILL) and started again in the middle of a run: every event the stream
had acknowledged is still there (file storage, sync_interval always), the publishers (the
folder watcher's ingest, the handlers, the outbox relay) and the consumers reconnect on their
own, and the run completes with every image uploaded exactly once; the projections then rebuild
from the stream with no difference.

40 images (20 before the kill, 10 written while NATS is down, 10 after), uploaded to the local
platform, every handler in this process: the point is the bus, and a smaller run shows it."""

from __future__ import annotations

import pytest

from tests.faults.pipeline import (
    HANDLERS,
    Comfy,
    assert_exactly_once,
    at_least,
    settled,
    count_status,
    rebuild_report,
    running_pipeline,
    stored_events,
)
from tests.waiting import wait_until


@pytest.mark.timeout(200)
async def test_a_nats_restart_mid_run_loses_no_acked_event_and_the_run_completes(
    fresh_nats, migrated_db, pool, tmp_path
):
    comfy = Comfy(tmp_path / "comfy")
    settings = comfy.settings(fresh_nats.url, migrated_db, tmp_path / "data")
    async with running_pipeline(settings, comfy, pool) as rt:
        js = rt.ports.js
        comfy.write(range(20))
        await wait_until(lambda: at_least(pool, "uploaded", 8), timeout=90, what="8 uploads")
        acked = {se.event.event_id for se in await stored_events(js)}  # everything the stream has acknowledged

        fresh_nats.kill()  # a crash: only what was on disk when acked may be relied on
        comfy.write(range(20, 30))
        await wait_until(lambda: len(comfy.retries) >= 1, timeout=30, what="an ingest to fail while NATS is down")
        uploaded_while_down = await count_status(pool, "uploaded")
        fresh_nats.start()  # same port: clients reconnect to the URL they have
        comfy.write(range(30, 40))

        await wait_until(lambda: at_least(pool, "uploaded", 40), timeout=120, interval=0.2, what="40 uploads")
        await wait_until(lambda: settled(js, pool, HANDLERS), timeout=30, what="the outbox and the consumers")
        stored = await stored_events(js)
        assert acked <= {se.event.event_id for se in stored}  # nothing acked was lost
        await assert_exactly_once(js, pool, comfy.ids)
    assert len(comfy.ids) == 40 and uploaded_while_down < 40
    report = await rebuild_report(settings)
    assert report["events"] == len(stored) == 4 * 40

