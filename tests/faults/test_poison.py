"""Poison published by hand on EVENTS subjects in the middle of a run: an event that is valid JSON
and a valid envelope but impossible (`image.approved` for a content id that was never
generated) and a body that is not even JSON. Both end in the dead letters (`vaultline dlq list
--json`): the impossible approval after max_deliver attempts of the upload handler (it waits
for a content row that never comes), the invalid body at once, terminated by every handler that
reads its subject. The consumers keep going: the images written after the poison are uploaded
exactly once, and the projections rebuild from the stream with no difference (the invalid body
is reported, not projected).

6 images, max_deliver 4 with 0.1 s base delay (the production 8 deliveries over ~2 minutes
would only make the test longer: the path to the dead letters is the same)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.children import vl
from tests.faults.pipeline import (
    HANDLERS,
    Comfy,
    assert_exactly_once,
    at_least,
    rebuild_report,
    running_pipeline,
    settled,
)
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import event_headers
from vaultline.adapters.bus.stream import connect
from vaultline.events import new_event


@pytest.mark.timeout(150)
async def test_poison_and_invalid_json_end_in_the_dead_letters_and_the_consumers_keep_going(
    fresh_nats, migrated_db, pool, tmp_path
):
    comfy = Comfy(tmp_path / "comfy")
    settings = comfy.settings(fresh_nats.url, migrated_db, tmp_path / "data",
                              max_deliver=4, retry_base_delay=0.1, retry_max_delay=1.0)  # fmt: skip
    ghost = uuid.uuid4()  # never generated, never cropped, never in review
    impossible = new_event("image.approved", creator=comfy.creator, key=ghost, payload={"vault": "feed"})
    garbage_id, garbage_key = uuid.uuid4(), uuid.uuid4()
    async with running_pipeline(settings, comfy, pool) as rt:
        comfy.write(range(3))
        await wait_until(lambda: at_least(pool, "uploaded", 1), timeout=60, what="a first upload")

        nc, js = await connect(settings.nats_url, name="by-hand")  # plain nats-py, as a person would
        try:
            await js.publish(impossible.subject, impossible.to_json(), headers=event_headers(impossible))
            await js.publish(f"image.approved.{comfy.creator}.{garbage_key}", b'{"type": "image.approved", "paylo',
                             headers={"Nats-Msg-Id": str(garbage_id)})  # cut short: not JSON
        finally:
            await nc.close()
        comfy.write(range(3, 6))  # good events behind the poison

        await wait_until(lambda: at_least(pool, "uploaded", 6), timeout=90, what="the images after the poison")
        await wait_until(lambda: _dead_letter_count(pool, 5), timeout=30, what="5 dead letters")
        await wait_until(lambda: settled(rt.ports.js, pool, HANDLERS), timeout=30, what="everything to be done")
        expected = frozenset({("upload", "max_deliveries", impossible.event_id), ("tracker", "terminated", garbage_id),
                              ("library", "terminated", garbage_id), ("upload", "terminated", garbage_id),
                              ("analytics", "terminated", garbage_id)})  # fmt: skip
        await assert_exactly_once(rt.ports.js, pool, comfy.ids, poison=frozenset({str(ghost), str(garbage_key)}),
                                  dead_letters=expected)  # fmt: skip

    listed = await vl(settings, "dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {(r["consumer"], r["reason"], r["event_id"]): r for r in json.loads(listed.stdout)}
    assert set(rows) == {(c, r, str(e)) for c, r, e in expected}
    poisoned = rows[("upload", "max_deliveries", str(impossible.event_id))]
    assert poisoned["subject"] == impossible.subject and poisoned["deliveries"] == 4
    assert "not projected" in poisoned["last_error"]  # what the operator sees: why it gave up
    invalid = rows[("tracker", "terminated", str(garbage_id))]
    assert "InvalidEvent" in invalid["last_error"] and invalid["subject"].endswith(str(garbage_key))

    report = await rebuild_report(settings)
    assert report["events"] == 4 * 6 + 2


async def _dead_letter_count(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM dead_letters") >= n
