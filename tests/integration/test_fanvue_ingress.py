"""Where sales and fans come from: the webhook use case and the sync loop against a real
PostgreSQL and the test Fanvue over HTTP. Facts land in the outbox (published by the relay);
the same fact from a redelivery, from the webhook and the poll, or from two passes is one row."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.fanvue_server import FanvueTestServer
from vaultline.adapters.db.fanvue import PostgresFanvueStore, save_account
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.tokens import StaticTokenProvider
from vaultline.domain.webhooks import BadSignature, purchase_key, sign
from vaultline.events import parse_event
from vaultline.handlers.fanvue_sync import sync_creator
from vaultline.handlers.webhooks import receive_webhook

SECRET = "whsec_integration"
FAN = "5939aa00-0000-4000-8000-00000000000a"


@pytest.fixture
def server() -> Any:
    with FanvueTestServer() as s:
        yield s


@pytest.fixture
async def client(server: FanvueTestServer) -> AsyncIterator[FanvueClient]:
    async with FanvueClient(StaticTokenProvider(server.issue_tokens()["access_token"]), creator="elena",
                            base_url=server.base_url) as c:
        yield c


@pytest.fixture
async def store(pool: Any, server: FanvueTestServer) -> PostgresFanvueStore:
    await save_account(pool, "elena", server.user)
    return PostgresFanvueStore(pool)


async def _outbox(pool: Any) -> list[Any]:
    rows = await pool.fetch("SELECT body FROM outbox ORDER BY id")
    return [parse_event(bytes(r["body"])) for r in rows]


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- webhooks


async def _deliver(store: PostgresFanvueStore, event: str, body: dict[str, Any], *, secret: str = SECRET,
                   t: int | None = None) -> Any:
    raw = json.dumps(body).encode()
    header = sign(secret, raw, t if t is not None else int(time.time()))
    return await receive_webhook(event, raw, header, secret=SECRET, now=_now(), store=store)


async def test_duplicate_webhook_is_one_event(store: PostgresFanvueStore, pool: Any, server: FanvueTestServer) -> None:
    body = {"routeUuid": "r-1", "price": 1999, "recipientUuid": server.user["uuid"], "sender": {"uuid": FAN},
            "timestamp": "2026-01-01T10:00:00Z"}
    first = await _deliver(store, "purchase", body)
    again = await _deliver(store, "purchase", body)
    assert (first.status, first.creator, first.new) == ("recorded", "elena", 1)
    assert (again.status, again.new) == ("recorded", 0) and again.events == first.events
    (event,) = await _outbox(pool)
    assert event.type == "sale.recorded" and event.creator == "elena"
    assert event.payload.dedupe_key == purchase_key("r-1") and event.payload.gross_cents == 1999


async def test_bad_signature_records_nothing(store: PostgresFanvueStore, pool: Any, server: FanvueTestServer) -> None:
    body = {"price": 100, "recipientUuid": server.user["uuid"], "sender": {"uuid": FAN}}
    with pytest.raises(BadSignature):
        await _deliver(store, "tip", body, secret="wrong")
    with pytest.raises(BadSignature):
        await _deliver(store, "tip", body, t=int(time.time()) - 600)
    assert await _outbox(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM fanvue_unrouted_webhooks") == 0


async def test_unknown_recipient_is_kept_not_published(store: PostgresFanvueStore, pool: Any) -> None:
    body = {"price": 1299, "recipientUuid": "someone-else", "sender": {"uuid": FAN}, "timestamp": "t"}
    out = await _deliver(store, "new-subscriber", body)
    await _deliver(store, "new-subscriber", body)  # Fanvue retries: still one row
    assert out.status == "unknown_recipient" and out.events == ()
    assert await _outbox(pool) == []
    row = await pool.fetchrow("SELECT event, recipient_uuid, reason, body, deliveries FROM fanvue_unrouted_webhooks")
    assert (row["event"], row["recipient_uuid"], row["deliveries"]) == ("new-subscriber", "someone-else", 2)
    assert json.loads(bytes(row["body"])) == body and "unknown recipient" in row["reason"]


async def test_unreadable_body_is_kept(store: PostgresFanvueStore, pool: Any, server: FanvueTestServer) -> None:
    out = await _deliver(store, "purchase", {"recipientUuid": server.user["uuid"], "price": 5})
    assert out.status == "unreadable" and "no fan" in (out.reason or "")
    assert await _outbox(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM fanvue_unrouted_webhooks") == 1


# --------------------------------------------------------------------------- sync loop


async def test_sync_pass_messages_purchases_earnings_counted_once(
        store: PostgresFanvueStore, pool: Any, server: FanvueTestServer, client: FanvueClient) -> None:
    server.fan_says(FAN, "too old to answer now", handle="sam", sent_at=_now() - timedelta(days=3))
    hello = server.fan_says(FAN, "hi! anything new?", handle="sam")
    (media,) = server.add_ready_media(1)
    ppv = await client.send_chat_message(FAN, "just for you", [media], price_cents=500)
    free = await client.send_chat_message(FAN, "thanks!")

    first = await sync_creator("elena", client, store, now=_now())
    events = await _outbox(pool)
    assert [(e.type, e.payload.message_uuid) for e in events] == [("message.received", hello["uuid"])]
    msg = events[0].payload
    assert (msg.fan_id, msg.text, msg.source, msg.fan.handle) == (FAN, "hi! anything new?", "sync", "sam")
    assert first.messages == 1 and first.purchases == 0 and first.new_events == 1
    open_rows = await pool.fetch("SELECT message_uuid, price_cents FROM fanvue_open_ppv")
    assert [(r["message_uuid"], r["price_cents"]) for r in open_rows] == [(ppv, 500)]  # not `free`
    assert free != ppv

    # The fan buys the PPV (no new chat message), and the sale shows in the earnings too.
    server.purchase(ppv)
    server.add_earning(500, fan=FAN, source="message")
    second = await sync_creator("elena", client, store, now=_now())
    assert second.messages == 0 and second.purchases == 1 and second.earnings == 1 and second.new_events == 2
    sales = [e for e in await _outbox(pool) if e.type == "sale.recorded"]
    exact = next(e.payload for e in sales if e.payload.source == "sync")
    assert (exact.kind, exact.gross_cents, exact.message_uuid, exact.fan_id) == ("purchase", 500, ppv, FAN)
    assert exact.dedupe_key == purchase_key(ppv)
    earned = next(e.payload for e in sales if e.payload.source == "earnings")
    assert (earned.kind, earned.gross_cents, earned.net_cents, earned.fan_id) == ("purchase", 500, 400, FAN)
    assert await pool.fetchval("SELECT count(*) FROM fanvue_open_ppv") == 0

    # A third pass re-reads the earnings overlap and finds nothing new.
    third = await sync_creator("elena", client, store, now=_now())
    assert third.new_events == 0 and third.earnings == 1
    assert server.count("chats.messages") >= 2

    # The same facts arriving as webhooks later: the message and the purchase are not new.
    recipient = server.user["uuid"]
    again_msg = await _deliver(store, "message-received", {
        "messageUuid": hello["uuid"], "message": {"uuid": hello["uuid"], "text": "hi! anything new?"},
        "sender": {"uuid": FAN}, "recipientUuid": recipient, "timestamp": hello["sentAt"]})
    again_buy = await _deliver(store, "purchase", {"routeUuid": ppv, "price": 500, "recipientUuid": recipient,
                                                   "sender": {"uuid": FAN}, "timestamp": "2026-01-01T00:00:00Z"})
    assert again_msg.new == 0 and again_buy.new == 0
    assert len(await _outbox(pool)) == 3  # hello, exact purchase, earnings row


async def test_new_messages_after_the_mark_only(store: PostgresFanvueStore, pool: Any, server: FanvueTestServer,
                                                client: FanvueClient) -> None:
    server.fan_says(FAN, "one")
    await sync_creator("elena", client, store, now=_now())
    other = str(uuid.uuid4())
    server.fan_says(FAN, "two")
    server.fan_says(other, "hello from someone else")
    report = await sync_creator("elena", client, store, now=_now())
    assert report.messages == 2 and report.new_events == 2
    texts = [e.payload.text for e in await _outbox(pool)]
    assert texts[0] == "one" and sorted(texts[1:]) == ["hello from someone else", "two"]


async def test_sync_loop_inside_the_runtime_uses_the_upload_client(settings: Any, js: Any,
                                                                    server: FanvueTestServer) -> None:
    """What `vaultline run` starts: the loop polls through the creator's upload platform client (one
    request budget, in PostgreSQL), and its facts reach the stream through the outbox relay."""
    from tests.waiting import wait_until
    from vaultline.adapters.bus.stream import read_events
    from vaultline.adapters.db.rate_bucket import PostgresTokenBucket
    from vaultline.adapters.fanvue.connect import token_store
    from vaultline.adapters.fanvue.tokens import TokenSet
    from vaultline.bootstrap import Runtime, fanvue_sync

    settings = settings.model_copy(update={"fanvue_base_url": server.base_url, "fanvue_sync_interval": 0.2})
    async with Runtime(settings, ["tracker"]) as rt:
        grant = server.issue_tokens()
        async with token_store(settings.database_url, settings.data_dir) as tokens:
            await tokens.save("elena", TokenSet.from_token_response(grant, now=time.time()))
        await save_account(rt.pool, "elena", server.user)
        hello = server.fan_says(FAN, "are you there?")
        task = rt.add_task(fanvue_sync(rt))

        async def received() -> list[Any]:
            return [se.event async for se in read_events(js, subject=f"message.received.elena.{FAN}")]

        await wait_until(received, what="the polled message on the stream")
        (event,) = await received()
        assert event.payload.message_uuid == hello["uuid"] and event.payload.source == "sync"
        platform = await rt.ports.platforms("elena")
        assert platform.name == "fanvue" and isinstance(platform.client.bucket, PostgresTokenBucket)
        spent = await rt.pool.fetchval("SELECT tokens FROM rate_buckets WHERE key = 'fanvue:elena'")
        assert spent is not None and spent < 200  # the polls were paid from the creator's budget
        # Later passes find nothing new; the loop keeps running until the runtime stops.
        await wait_until(lambda: server.count("chats.list") >= 3, what="more passes")
        assert len(await received()) == 1 and not task.done()
