"""The chat consumer on real NATS + PostgreSQL + the test Ollama over HTTP: Ollama down ->
pending, redelivered with backoff -> ready once it is back; a redelivered message never makes
a second suggestion set; the handler never sends."""

from __future__ import annotations

import uuid

import pytest

from tests.ollama_server import Fault
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.bootstrap import Runtime
from vaultline.events import MessageReceived, new_event

pytestmark = pytest.mark.integration


def received(fan: str, text: str, event_id: uuid.UUID | None = None):
    return new_event("message.received", creator="elena", key=fan, event_id=event_id,
                     payload=MessageReceived(platform="local", fan_id=fan, message_uuid=str(uuid.uuid4()), text=text))  # fmt: skip


async def suggestion(pool, fan: str):
    return await pool.fetchrow("SELECT * FROM suggestions WHERE fan_id = $1", fan)


async def test_outage_pending_then_recovered_and_redelivery_is_one_set(settings, pool, js, ollama_server):
    # Every /api/chat fails until the queue runs dry: 3 tries per delivery (the OLLAMA policy).
    ollama_server.script(*[Fault("503")] * 6)
    s = settings.model_copy(update={"ollama_host": ollama_server.host, "ollama_model": "llama3.2"})
    async with Runtime(s, ["chat"]) as rt:
        event = received("fan1", "hello?")
        await rt.ports.publisher.publish(event)

        async def pending():
            row = await suggestion(pool, "fan1")
            return row is not None and row["status"] == "pending" and row["attempts"] >= 1 and row

        row = await wait_until(pending, timeout=30, what="a pending suggestion")
        assert "503" in row["reason"]

        async def ready():
            row = await suggestion(pool, "fan1")
            return row is not None and row["status"] == "ready" and row

        row = await wait_until(ready, timeout=60, what="the suggestion to recover")
        assert row["drafts"] == ["thanks for writing: hello?"]
        await rt.ports.publisher.publish(received("fan1", "hello?", event_id=uuid.uuid4()))  # other fan message
        await wait_until(lambda: pool.fetchval("SELECT count(*) = 2 FROM suggestions WHERE status = 'ready'"), timeout=30)
        # The same event again (a redelivery from another producer) changes nothing.
        chats_before = ollama_server.counts["/api/chat"]
        await js.publish(event.subject, event.to_json())  # no Nats-Msg-Id: the stream stores it again
        await wait_until(lambda: pool.fetchval(
            "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"), timeout=30, what="the relay")  # fmt: skip
        await wait_until(lambda: _consumer_done(js), timeout=30, what="the chat consumer to catch up")
        assert ollama_server.counts["/api/chat"] == chats_before
        assert await pool.fetchval("SELECT count(*) FROM suggestions") == 2

    statuses = [se.event.payload.status async for se in read_events(js, subject="reply.suggested.elena.fan1")]
    assert sorted(statuses) == ["pending", "ready", "ready"]
    assert [se async for se in read_events(js, subject="message.sent.>")] == []


async def _consumer_done(js) -> bool:
    info = await js.consumer_info("EVENTS", "chat")
    return info.num_pending == 0 and info.num_ack_pending == 0
