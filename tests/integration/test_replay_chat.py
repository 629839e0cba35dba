"""`vaultline replay --rebuild` over a run with chat (the chat consumer drafting through the test
Ollama over HTTP, a person sending and discarding in the inbox), a send, a sale and analytics:
messages, suggestions and the aggregates are rebuilt from the recorded events (the model is never
asked again) equal to the live tables; a corrupted live row is exactly the difference; --swap
keeps what belongs to a use case or an operator. And a poison event in a batch fed to several
projectors (the tracker's in-memory buffer, sales and analytics on SQL) is left out alone."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.test_dlq_cli import vl
from tests.integration.test_replay import image_events
from tests.waiting import wait_until
from vaultline.adapters.platforms import LocalPlatform
from vaultline.bootstrap import Runtime, chat_sender, inbox_ports
from vaultline.entrypoints import replay
from vaultline.events import FanRef, MessageReceived, new_event, utcnow
from vaultline.handlers import inbox

pytestmark = pytest.mark.integration
CREATOR = "elena"
CHAT_TABLES = ("messages", "suggestions")


def said(fan: str, text: str, minutes_ago: float = 0.0):
    return new_event("message.received", creator=CREATOR, key=fan, payload=MessageReceived(
        platform="local", fan_id=fan, message_uuid=str(uuid.uuid4()), text=text, fan=FanRef(handle=fan),
        sent_at=utcnow() - timedelta(minutes=minutes_ago)))  # fmt: skip


async def _idle(js, *consumers: str) -> bool:
    for name in consumers:
        info = await js.consumer_info("EVENTS", name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def _status(pool, fan: str) -> str | None:
    return await pool.fetchval(
        "SELECT status FROM suggestions WHERE creator = $1 AND fan_id = $2 ORDER BY id DESC LIMIT 1", CREATOR, fan
    )


@pytest.fixture
async def chat_run(settings, pool, js, ollama_server, tmp_path):
    """Two uploaded PPV images; fan-1 asks twice (the model drafts with an offer of image 1; the
    answer to the second message supersedes the first) and a person sends draft 1 edited, which
    goes through the send guard (media.sent); fan-1 buys it; fan-2's message is flagged (no model
    call); fan-3's drafts are discarded; fan-4 writes while the model is down: pending, retried."""
    events, ids = image_events(2)
    offer = {"content_id": str(ids[0]), "price_cents": 999}
    ollama_server.responder = lambda body: {"drafts": ["hey you", "hi!"], "offer": offer if "show me" in json.dumps(body) else None}
    s = settings.model_copy(update={"ollama_host": ollama_server.host, "ollama_model": "llama3.2"})
    platform = LocalPlatform(tmp_path / "platform")

    async def platforms(creator: str) -> LocalPlatform:
        return platform

    async def name_of(creator: str) -> str:
        return "local"

    async with Runtime(s, ["tracker", "sales", "analytics", "chat"], platforms=platforms) as rt:
        for e in events:
            await rt.publisher.publish(e)
        await wait_until(lambda: pool.fetchval("SELECT count(*) = 2 FROM content WHERE status = 'uploaded'"), timeout=30)
        for e in (said("fan-1", "hi, show me something", 5), said("fan-1", "are you there?", 4),
                  said("fan-2", "im 16, can we meet up?"), said("fan-3", "hello")):  # fmt: skip
            await rt.publisher.publish(e)
        for fan, status in (("fan-1", "ready"), ("fan-2", "flagged"), ("fan-3", "ready")):
            await wait_until(lambda fan=fan, status=status: _is(pool, fan, status), timeout=30, what=f"{fan} {status}")
        ip = inbox_ports(s, pool, name_of)
        sent = await inbox.send(ip, chat_sender(pool, platforms), "fan-1", draft=1, edit="hey you, look", approved_by="op")
        assert sent["offer"] is not None and sent["reply_seconds"] >= 240
        await inbox.discard(ip, "fan-3", by="op")
        await rt.publisher.publish(new_event("sale.recorded", creator=CREATOR, key=uuid.uuid4(), payload={
            "dedupe_key": f"local:purchase:{sent['message_uuid']}", "kind": "purchase", "gross_cents": 999,
            "platform": "local", "source": "local", "sold_at": datetime.now(timezone.utc), "fan_id": "fan-1",
            "route_uuid": sent["message_uuid"], "fan": {"handle": "fan-1"}}))  # fmt: skip
        ollama_server.down = 503
        await rt.publisher.publish(said("fan-4", "anyone?"))
        await wait_until(lambda: pool.fetchval("SELECT attempts >= 1 FROM suggestions WHERE fan_id = 'fan-4'"),
                         timeout=30, what="fan-4 pending")  # fmt: skip
        await wait_until(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"), timeout=30)
        await wait_until(lambda: _idle(js, "tracker", "sales", "analytics"), timeout=30, what="consumers idle")
    assert await pool.fetchval("SELECT times_purchased FROM content WHERE id = $1", ids[0]) == 1
    statuses = dict(await pool.fetch("SELECT fan_id, status FROM suggestions WHERE fan_id <> 'fan-1'"))
    assert statuses == {"fan-2": "flagged", "fan-3": "discarded", "fan-4": "pending"}
    assert [r[0] for r in await pool.fetch("SELECT status FROM suggestions WHERE fan_id = 'fan-1' ORDER BY id")] == [
        "superseded", "sent"]  # fmt: skip
    return ids, ollama_server


async def _is(pool, fan: str, status: str) -> bool:
    return await _status(pool, fan) == status


async def test_chat_sales_and_analytics_rebuild_equal_then_a_corrupted_row_is_the_difference_and_swap_keeps_working_state(
    settings, pool, chat_run
):
    ids, ollama = chat_run
    model_calls = ollama.counts["/api/chat"]
    clean = await vl(settings, "replay", "--rebuild", "--json")
    assert clean.exit_code == 0, clean.output
    report = json.loads(clean.stdout)
    assert report["differences"] == 0
    tables = report["tables"]
    assert tables["messages"] == {"live_rows": 6, "rebuilt_rows": 6, "differences": 0}  # 5 in, 1 out
    # fan-4's pending suggestion is the chat handler's working state: not compared.
    assert tables["suggestions"] == {"live_rows": 4, "rebuilt_rows": 4, "differences": 0}
    assert tables["analytics_daily"]["live_rows"] > 0 and tables["analytics_reply_times"]["live_rows"] == 1
    assert tables["sends"]["live_rows"] == 1 and tables["sales"]["live_rows"] == 1
    assert ollama.counts["/api/chat"] == model_calls  # the rebuild never asks the model

    # The chat projection re-run on the live tables: everything is already there.
    again = await vl(settings, "replay", "--handler", "chat", "--from-seq", "1", "--json")
    assert again.exit_code == 0, again.output
    ran = json.loads(again.stdout)
    assert ran["seen"] >= 8 and ran["applied"] == 0 and ran["skipped"] == ran["seen"]

    await pool.execute("UPDATE messages SET text = 'tampered' WHERE fan_id = 'fan-3'")
    await pool.execute("UPDATE analytics_daily SET value = value + 1 WHERE metric = 'images.generated'")
    tampered = await vl(settings, "replay", "--rebuild", "--json")
    assert tampered.exit_code == 1
    bad = json.loads(tampered.stdout)
    assert bad["differences"] == 2
    assert bad["tables"]["messages"]["differences"] == 1 and bad["tables"]["analytics_daily"]["differences"] == 1
    shown = await vl(settings, "replay", "--rebuild")
    assert "live='tampered'" in shown.output and "rebuilt='hello'" in shown.output  # rich wraps long lines

    # Operator and use-case state survives the swap: fan notes, fan-4's retries.
    await pool.execute("UPDATE fans SET notes = 'vip' WHERE fan_id = 'fan-1'")
    await pool.execute("UPDATE suggestions SET attempts = 7, reason = 'model unavailable: 7th' WHERE fan_id = 'fan-4'")
    swapped = await vl(settings, "replay", "--rebuild", "--swap")
    assert swapped.exit_code == 1 and "replay_backup_" in swapped.output
    await pool.expire_connections()
    assert await pool.fetchval("SELECT text FROM messages WHERE fan_id = 'fan-3'") == "hello"
    assert await pool.fetchval("SELECT notes FROM fans WHERE fan_id = 'fan-1'") == "vip"
    row = await pool.fetchrow("SELECT status, attempts, reason FROM suggestions WHERE fan_id = 'fan-4'")
    assert tuple(row) == ("pending", 7, "model unavailable: 7th")
    # The rebuilt rows hang together: each suggestion points at its own message.
    assert await pool.fetchval(
        "SELECT count(*) FROM suggestions s JOIN messages m ON m.id = s.message_id AND m.event_id = s.message_event_id"
    ) == 5  # fmt: skip
    assert await pool.fetchval(
        "SELECT m.text FROM suggestions s JOIN messages m ON m.id = s.sent_message_id WHERE s.status = 'sent'"
    ) == "hey you, look"  # fmt: skip
    final = await vl(settings, "replay", "--rebuild", "--json")
    assert final.exit_code == 0, final.output


async def test_a_poison_event_in_a_batch_with_several_projectors_is_left_out_alone(settings, pool, js):
    """One batch: two images (the tracker's buffer), a send and its sale (sales on SQL flushes the
    buffer), then an image.generated the tracker refuses (analytics counts it, as live) and a third
    image. The batch is redone with a savepoint per event: only the tracker's poison is left out,
    the rows flushed before it are projected again, and the result equals the live run."""
    events, ids = image_events(3)
    sent_at = datetime.now(timezone.utc)
    media_sent = new_event("media.sent", creator=CREATOR, key=ids[0], occurred_at=sent_at, payload={
        "platform": "local", "fan_id": "fan-1", "content_id": ids[0], "message_uuid": "msg-1", "price_cents": 999,
        "bundle": [ids[0]], "sent_by": "op"})  # fmt: skip
    sale = new_event("sale.recorded", creator=CREATOR, key=uuid.uuid4(), payload={
        "dedupe_key": "local:purchase:msg-1", "kind": "purchase", "gross_cents": 999, "platform": "local",
        "source": "local", "sold_at": sent_at, "fan_id": "fan-1", "route_uuid": "msg-1"})  # fmt: skip
    poison = new_event("image.generated", creator=CREATOR, key="not-a-uuid", payload=events[0].payload)
    async with Runtime(settings, ["tracker", "sales", "analytics"]) as rt:
        for e in events[:8]:
            await rt.publisher.publish(e)
        # The send reads the uploaded media's uuid: published once the tracker has it, as live.
        await wait_until(lambda: pool.fetchval("SELECT count(*) = 2 FROM content WHERE status = 'uploaded'"), timeout=30)
        for e in [media_sent, sale, poison, *events[8:]]:
            await rt.publisher.publish(e)
        await wait_until(lambda: pool.fetchval("SELECT count(*) = 3 FROM content WHERE status = 'uploaded'"), timeout=30)
        await wait_until(lambda: _idle(js, "tracker", "sales", "analytics"), timeout=30, what="consumers idle")
    assert await pool.fetchval("SELECT times_purchased FROM content WHERE id = $1", ids[0]) == 1

    result = await replay.rebuild(settings, keep=False)
    await replay.drop(settings, result.schema)
    assert result.events == 15
    assert [(f["seq"], f["type"]) for f in result.failed] == [(11, "image.generated")]
    assert result.differences == 0, {n: t.differences for n, t in result.tables.items() if t.differences}
    assert (result.tables["content"].live_rows, result.tables["content"].rebuilt_rows) == (3, 3)
    assert result.tables["analytics_daily"].live_rows > 0 and result.tables["sales"].rebuilt_rows == 1
