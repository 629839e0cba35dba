"""One undecodable outbox row never blocks the relay (real PostgreSQL + nats-server)."""

from __future__ import annotations

import uuid

import pytest

from tests.waiting import wait_until
from vaultline.adapters.bus.topology import EVENTS_STREAM
from vaultline.bootstrap import Runtime
from vaultline.events import new_event

pytestmark = pytest.mark.integration


def approved():
    return new_event("image.approved", creator="elena", key=uuid.uuid4(), payload={"vault": "feed"})


async def test_an_undecodable_row_moves_aside_and_the_rows_behind_it_are_published(settings, pool):
    poison_id, good = uuid.uuid4(), approved()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO outbox(event_id, subject, body) VALUES ($1, 'image.approved.elena.x', $2)",
            poison_id, b'{"type": "image.approved", "payload": {"vault": 42}',  # cut short: not even JSON
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)", good.event_id, good.subject, good.to_json()
        )
    async with Runtime(settings, []) as rt:
        await wait_until(
            lambda: pool.fetchval("SELECT published_at FROM outbox WHERE event_id = $1", good.event_id),
            timeout=20, what="the row behind the poison to be published",
        )  # fmt: skip
        info = await rt.ports.js.stream_info(EVENTS_STREAM)
        msg = await rt.ports.js.get_msg(EVENTS_STREAM, info.state.last_seq)
    assert info.state.messages == 1 and msg.headers["Nats-Msg-Id"] == str(good.event_id)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", poison_id) == 0
    dead = await pool.fetchrow("SELECT * FROM outbox_dead_letters WHERE event_id = $1", poison_id)
    assert dead is not None and "undecodable" in dead["reason"] and bytes(dead["body"]).startswith(b'{"type"')
