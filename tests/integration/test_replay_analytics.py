"""`replay --rebuild` runs analytics over rows in memory (adapters/db/analytics.py
BufferedAnalyticsStore), not over SQL as live: the send and sale paths (contents known by approval
or only by upload, bundles, milestones set once, a sale waiting for the message it bought,
sales by content id, the same sale reported twice, tips, fans' spend) and a poison approval
must give exactly the analytics tables the live SQL store gives, in batches that commit, in
batches redone event by event, and across batches."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bench.replay import image_run
from tests.integration.test_replay_sales import T, fan_event, live_tables, sent, sold
from vaultline.adapters.bus.provision import provision
from vaultline.entrypoints import replay
from vaultline.events import new_event

pytestmark = pytest.mark.integration

ONLY_UPLOADED = uuid.uuid4()  # known to analytics by its upload alone (vault, no category)


def stream() -> list:
    cids = [uuid.uuid4() for _ in range(5)]
    ev = [e for i, c in enumerate(cids) for e in image_run(c, "elena", i)]
    ev[2] = new_event("image.approved", creator="elena", key=cids[0], payload=ev[2].payload.model_dump()
                      | {"category": "beach"})  # fmt: skip
    ev.append(new_event("media.uploaded", creator="elena", key=ONLY_UPLOADED, payload=ev[3].payload))
    bundle = sent(cids[1], "fan-2", "m2", 1500, T)
    ev += [
        sold("fanvue:purchase:m1", source="webhook", gross=999, route_uuid="m1"),  # before its message: waits
        sold("fanvue:tip:early", source="webhook", kind="tip", gross=200, route_uuid="m1"),  # waits too
        sent(cids[0], "fan-1", "m1", 999, T),  # attributes both
        new_event("media.sent", creator="elena", key=cids[1], occurred_at=T, payload=bundle.payload.model_dump()
                  | {"bundle": [cids[2], cids[1]]}),  # fmt: skip
        new_event("media.sent", creator="elena", key=cids[2], occurred_at=T, payload=bundle.payload.model_dump()
                  | {"content_id": cids[2], "bundle": [cids[2], cids[1]]}),  # fmt: skip
        sent(cids[2], "fan-2", "m2", 1500, T),  # the same send again under another event id
        sent(ONLY_UPLOADED, "fan-3", "m3", 500, T + timedelta(days=1)),
        sent(cids[3], "fan-3", "m4", None, T),  # free: not an offer
        sold("fanvue:purchase:m2", source="webhook", gross=1500, fan="fan-2", route_uuid="m2"),
        sold("fanvue:purchase:m2", source="sync", gross=1500, fan="fan-2", message_uuid="m2"),  # same key
        sold("fanvue:purchase:m3", source="webhook", gross=500, fan="fan-3", route_uuid="m3",
             at=T + timedelta(days=2)),  # fmt: skip
        sold("fanvue:purchase:c4", source="webhook", gross=700, fan="fan-4", content_id=cids[4]),  # by content
        sold("fanvue:purchase:c4-again", source="webhook", gross=700, fan="fan-4", content_id=cids[4],
             at=T + timedelta(days=1)),  # second purchase: first_purchased_on stays  # fmt: skip
        sold("fanvue:purchase:nothing", source="webhook", gross=4999, fan="fan-5", route_uuid="never-sent"),
        new_event("image.approved", creator="elena", key="not-a-uuid", payload=ev[2].payload),  # poison
        sold("fanvue:purchase:late", source="webhook", gross=999, fan="fan-1", route_uuid="m9"),
        fan_event("fan.followed", "fan-5", T, fan={"handle": "five", "display_name": "Five"}),
        sent(cids[4], "fan-1", "m9", 999, T + timedelta(hours=1)),
    ]  # fmt: skip
    return ev


@pytest.mark.parametrize("batch", [500, 4])
async def test_rebuild_with_the_analytics_store_in_memory_equals_the_live_sql_store(settings, js, pool, monkeypatch,
                                                                                    batch):  # fmt: skip
    await provision(js)
    events = stream()
    for e in events:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    await live_tables(pool, events)
    # The stream takes the paths it is meant to (live, on SQL).
    assert await pool.fetchval("SELECT count(*) FROM analytics_sales WHERE attributed") == 7
    assert await pool.fetchval("SELECT count(*) FROM analytics_sales WHERE NOT attributed") == 1
    assert await pool.fetchval("SELECT count(*) FROM analytics_messages") == 5
    assert await pool.fetchval("SELECT count(*) FROM analytics_sends") == 6
    row = await pool.fetchrow("SELECT * FROM analytics_content WHERE content_id = $1", ONLY_UPLOADED)
    assert (row["vault"], row["category"], row["first_sent_on"], row["first_purchased_on"], row["purchases"]) == (
        "ppv", None, (T + timedelta(days=1)).date(), (T + timedelta(days=2)).date(), 1)  # fmt: skip
    assert await pool.fetchval("SELECT revenue_cents FROM analytics_fans WHERE fan_id = 'fan-5'") == 4999

    monkeypatch.setattr(replay, "BATCH", batch)  # 4: batches that commit, redone ones and rows across batches
    result = await replay.rebuild(settings, keep=False)
    await replay.drop(settings, result.schema)
    assert "image.approved" in [f["type"] for f in result.failed]
    analytics = {n: t for n, t in result.tables.items() if n.startswith("analytics_")}
    assert len(analytics) == 12
    assert {n: t.summary()["differences"] for n, t in result.tables.items()} == dict.fromkeys(result.tables, 0)
    assert analytics["analytics_sales"].rebuilt_rows == 8 and analytics["analytics_content"].rebuilt_rows == 6
