"""`replay --rebuild` runs the sales handler over rows in memory (adapters/db/rebuild_sales.py),
not over SQL as live: the same stream of sends, sales reported by several sources, tips, fan
events, a purchase that fails half-way and a poison event must give exactly the tables the live
SQL store gives, in batches that commit, in batches redone event by event, and across batches."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bench.replay import image_run
from vaultline.adapters.bus.provision import provision
from vaultline.adapters.bus.topology import CONSUMERS
from vaultline.bootstrap import REPLAYABLE
from vaultline.entrypoints import replay
from vaultline.events import new_event

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)


def sent(cid: uuid.UUID, fan: str, msg: str, price: int | None, at: datetime):
    return new_event("media.sent", creator="elena", key=cid, occurred_at=at, payload={
        "platform": "local", "fan_id": fan, "content_id": cid, "message_uuid": msg, "price_cents": price,
        "sent_by": "ann"})  # fmt: skip


def sold(key: str, *, source: str, gross: int = 999, fan: str | None = "fan-1", at: datetime = T,
         kind: str = "purchase", **ids):  # fmt: skip
    return new_event("sale.recorded", creator="elena", key=uuid.uuid5(uuid.NAMESPACE_URL, key), payload={
        "dedupe_key": key, "kind": kind, "gross_cents": gross, "net_cents": gross * 8 // 10, "platform": "local",
        "source": source, "sold_at": at, "fan_id": fan, "fan": {"handle": f"h-{fan}"}, **ids})  # fmt: skip


def fan_event(type_: str, fan_id: str, at: datetime, **payload):
    return new_event(type_, creator="elena", key=fan_id, occurred_at=at,
                     payload={"platform": "local", "fan_id": fan_id, **payload})  # fmt: skip


def stream() -> list:
    cids = [uuid.uuid4() for _ in range(6)]
    ghost = uuid.uuid4()  # sent and bought, never projected: the purchase fails half-way
    ev = [e for i, c in enumerate(cids) for e in image_run(c, "elena", i)]
    ev += [
        sent(cids[0], "fan-1", "m1", 1500, T), sent(cids[1], "fan-1", "m1", 1500, T),  # one message, two images
        sent(cids[2], "fan-2", "m2", 700, T), sent(cids[2], "fan-2", "m2", 700, T),  # a redelivered send
        sent(cids[3], "fan-1", "m3", 999, T + timedelta(minutes=1)),
        sent(cids[3], "fan-1", "m4", 999, T + timedelta(minutes=2)),  # sent again: next generation
        sent(cids[4], "fan-3", "m5", 500, T), sent(ghost, "fan-3", "m6", 400, T),
        fan_event("message.received", "fan-1", T, message_uuid="in-1", text="hi", source="webhook",
                  sent_at=T - timedelta(hours=1), fan={"handle": "one", "display_name": "One"}),
        fan_event("fan.followed", "fan-4", T - timedelta(days=1), fan={"handle": "four"}),
        fan_event("fan.subscribed", "fan-4", T - timedelta(days=2)),
        sold("fanvue:purchase:m1", source="webhook", gross=1500, route_uuid="m1"),  # by the message's id
        sold("fanvue:purchased:m1", source="sync", gross=1500, message_uuid="m1", at=T + timedelta(seconds=30)),
        sold("fanvue:earnings:a", source="earnings", gross=1500, at=T + timedelta(minutes=1)),  # same, by window
        sold("fanvue:earnings:b", source="earnings", gross=700, fan="fan-2"),  # no ids: fan + amount first
        sold("fanvue:purchase:m2", source="webhook", gross=700, fan="fan-2", route_uuid="m2"),  # ... then its ids
        sold("fanvue:purchase:m3-by-fan", source="local", gross=999, at=T + timedelta(minutes=5)),  # fan's last send
        sold("fanvue:purchase:m3-by-fan", source="local", gross=999, at=T + timedelta(minutes=5)),  # same key again
        sold("fanvue:tip:1", source="webhook", kind="tip", gross=300, fan="fan-2"),
        # One purchase reported 9 minutes apart across a 10-minute slice boundary (12:00): once.
        sold("fanvue:earnings:c", source="earnings", gross=1234, fan="fan-5", at=T - timedelta(minutes=1)),
        sold("fanvue:purchase:c", source="webhook", gross=1234, fan="fan-5", at=T + timedelta(minutes=8)),
        sold("fanvue:purchase:nothing", source="webhook", gross=4999, fan=None, route_uuid="unknown"),
        sold("fanvue:purchase:m6", source="webhook", gross=400, fan="fan-3", route_uuid="m6"),  # ghost: fails
        new_event("image.generated", creator="elena", key="not-a-uuid", payload=ev[0].payload),  # poison
        sold("fanvue:purchase:m5", source="webhook", gross=500, fan="fan-3", route_uuid="m5"),
    ]  # fmt: skip
    return ev


async def live_tables(pool, events) -> int:
    """What the live handlers make of `events` (each on SQL, in stream order, as their durables
    would); returns how many events a handler refused (live: dead letters)."""
    refused = 0
    projectors = [(CONSUMERS[n].filter_subjects, r.projector(pool)) for n, r in REPLAYABLE.items() if r.in_rebuild]
    for seq, e in enumerate(events, 1):
        for filters, apply in projectors:
            if any(replay.subject_matches(f, e.subject) for f in filters):
                try:
                    await apply(e, seq)
                except Exception:  # noqa: BLE001 - the transaction rolled back: no effect, as a dead letter
                    refused += 1
    return refused


@pytest.mark.parametrize("batch", [500, 4])
async def test_rebuild_with_the_sales_store_in_memory_equals_the_live_sql_store(settings, js, pool, monkeypatch, batch):
    await provision(js)
    events = stream()
    for e in events:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    assert await live_tables(pool, events) == 2  # the ghost's purchase, the poison
    assert await pool.fetchval("SELECT count(*) FROM sales") == 7
    assert await pool.fetchval("SELECT sum(times_purchased) FROM content") == 5

    monkeypatch.setattr(replay, "BATCH", batch)  # 4: batches that commit, redone ones and rows across batches
    result = await replay.rebuild(settings, keep=False)
    await replay.drop(settings, result.schema)
    assert sorted(f["type"] for f in result.failed) == ["image.generated", "sale.recorded"]
    assert "not projected yet" in next(f["error"] for f in result.failed if f["type"] == "sale.recorded")
    assert {n: t.summary()["differences"] for n, t in result.tables.items()} == dict.fromkeys(result.tables, 0)
    assert result.tables["sends"].rebuilt_rows == 7 and result.tables["fans"].rebuilt_rows == 5
    assert result.tables["sale_keys"].rebuilt_rows == 11


async def test_the_rebuild_reads_in_a_child_process_exactly_what_read_events_reads(js, nats_url):
    """The NATS side of reading runs in a child process; the events, their order, seq, subject
    and stored time are those of read_events; a child that cannot read makes the reader raise."""
    from vaultline.adapters.bus.stream import read_events, read_events_in_process

    await provision(js)
    events = stream()
    for e in events:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    want = [(se.seq, se.subject, se.stored_at, se.raw, se.error) async for se in read_events(js)]
    got = [(se.seq, se.subject, se.stored_at, se.raw, se.error)
           async for chunk in read_events_in_process(nats_url, batch=7) for se in chunk]  # fmt: skip
    assert got == want and len(got) == len(events)
    with pytest.raises(RuntimeError, match="stream reader"):
        async for _ in read_events_in_process("nats://127.0.0.1:1", batch=7):
            pass
