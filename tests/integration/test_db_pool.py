"""The pool gives connections back without asyncpg's reset round trip (adapters/db create_pool):
whatever that reset undid must never be left on a pooled session by our code."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.databases import RELAY_LISTENING
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import JetStreamPublisher, make_broker
from vaultline.adapters.bus.provision import provision
from vaultline.adapters.db.uploads import PostgresUploadStore
from vaultline.adapters.outbox import OutboxRelay
from vaultline.events import new_event

pytestmark = pytest.mark.integration


async def on_every_connection(pool, sql: str) -> list:
    """`sql` on each of the pool's connections (all held at once, so each is a different one)."""
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return [await c.fetchval(sql) for c in conns]
    finally:
        for c in conns:
            await pool.release(c)


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(pool):
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    await conn.execute("INSERT INTO fans(creator, platform, fan_id) VALUES ('elena', 'local', 'fan-1')")
    await pool.release(conn)
    assert await on_every_connection(pool, "SELECT count(*) FROM fans") == [0] * pool.get_max_size()
    idle_in_transaction = "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
    assert await pool.fetchval(idle_in_transaction) == 0


async def test_an_upload_runs_lock_is_freed_however_the_run_ends(pool):
    store, cid = PostgresUploadStore(pool), uuid.uuid4()
    async with store.exclusive(cid) as got:
        assert got
    with pytest.raises(RuntimeError):
        async with store.exclusive(cid) as got:
            assert got
            raise RuntimeError("the run failed")
    assert await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_the_relay_stops_listening_before_its_connection_goes_back(settings, pool, js):
    await provision(js)
    broker = make_broker(settings.nats_url)
    await broker.connect()
    stop = asyncio.Event()
    relay = asyncio.ensure_future(OutboxRelay(pool, JetStreamPublisher(broker), poll_s=30).run(stop))
    try:
        await wait_until(lambda: pool.fetchval(RELAY_LISTENING), what="the relay listening")
        event = new_event("image.approved", creator="elena", key=uuid.uuid4(), payload={"vault": "feed"})
        await pool.execute("INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)",
                           event.event_id, event.subject, event.to_json())  # fmt: skip
        # Published long before the 30 s poll: woken by its NOTIFY.
        await wait_until(lambda: pool.fetchval("SELECT published_at FROM outbox WHERE event_id = $1", event.event_id),
                         timeout=10, what="the relay woken by NOTIFY")  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(relay, 10)
        await broker.stop()
    assert await on_every_connection(pool, "SELECT count(*) FROM pg_listening_channels()") == [0] * pool.get_max_size()
