"""Delivery guarantees against a real nats-server and a real PostgreSQL.

TestNatsBroker cannot show any of these (no acks, redelivery, dedupe or advisories), so
every case here goes over sockets to the real servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from nats.js.api import DeliverPolicy

from tests.waiting import wait_until
from vaultline.adapters.bus.broker import Delivery, JetStreamPublisher, event_handler, make_broker
from vaultline.adapters.bus.provision import provision
from vaultline.adapters.bus.topology import EVENTS_STREAM, ConsumerSpec
from vaultline.adapters.outbox import OutboxRelay
from vaultline.bootstrap import Ports, Runtime
from vaultline.events import Envelope, new_event

pytestmark = pytest.mark.integration


def approved(creator: str = "elena", key: uuid.UUID | None = None) -> Envelope:
    return new_event(
        "image.approved", creator=creator, key=key or uuid.uuid4(), payload={"vault": "feed", "tags": ["a"]}
    )


async def effects_table(pool) -> None:
    await pool.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY, n integer NOT NULL, worker text)")


async def record_effect(p: Ports, handler: str, event: Envelope, d: Delivery, worker: str | None = None) -> None:
    """The handler's effect: one `effects` row per event, counted, in the same transaction as its
    processed_events row (so a redelivery of a processed event adds nothing)."""
    async with p.uow() as tx:
        if await tx.first_time(handler, event.event_id, d.stream_seq):
            await tx.conn.execute(
                "INSERT INTO effects(event_id, n, worker) VALUES ($1, 1, $2) "
                "ON CONFLICT (event_id) DO UPDATE SET n = effects.n + 1",
                event.event_id,
                worker,
            )


def effect_handler(name: str, *, fail_first: int = 0, always_fail: bool = False, worker: str = "w", log=None):
    """A handler that commits one effect per event (idempotently) and can be told to fail."""
    attempts: dict[uuid.UUID, list[float]] = {}

    def factory(p: Ports):
        async def run(event: Envelope, d: Delivery) -> None:
            attempts.setdefault(event.event_id, []).append(time.monotonic())
            if log is not None:
                log.append((worker, event.event_id))
            if always_fail or len(attempts[event.event_id]) <= fail_first:
                raise ConnectionError(f"downstream unavailable (attempt {d.deliveries})")
            await record_effect(p, name, event, d, worker)

        return event_handler(run)

    return factory, attempts


@contextmanager
def relay_dies_before_marking(relay: OutboxRelay) -> Iterator[None]:
    """Inside: the relay publishes, then dies (ConnectionResetError) before marking the rows
    published. On the way out it marks again."""
    original_mark = relay._mark_published

    async def crash(conn, ids):
        raise ConnectionResetError("relay died between publish and mark")

    relay._mark_published = crash
    try:
        yield
    finally:
        relay._mark_published = original_mark


def spec(name: str, **kw) -> ConsumerSpec:
    return ConsumerSpec(name, ("image.approved.>",), **kw)


async def test_publish_is_deduplicated_by_event_id(settings, js):
    await provision(js)
    broker = make_broker(settings.nats_url)
    await broker.connect()
    try:
        pub = JetStreamPublisher(broker)
        event = approved()
        first = await pub.publish_raw(event.subject, event.to_json(), {"Nats-Msg-Id": str(event.event_id)})
        second = await pub.publish_raw(event.subject, event.to_json(), {"Nats-Msg-Id": str(event.event_id)})
        other = await pub.publish_raw(event.subject, event.to_json(), {"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await broker.stop()
    assert not first.duplicate and second.duplicate and not other.duplicate
    assert second.seq == first.seq
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 2


async def test_transient_failures_retry_with_growing_delays_and_effect_once(settings, pool):
    await effects_table(pool)
    factory, attempts = effect_handler("flaky", fail_first=2)
    async with Runtime(settings, ["flaky"], custom={"flaky": (spec("flaky"), factory)}) as rt:
        event = approved()
        await rt.publisher.publish(event)
        await wait_until(lambda: pool.fetchval("SELECT n FROM effects WHERE event_id=$1", event.event_id))
    times = attempts[event.event_id]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    # base 0.1 s: each wait lasts at least its delay, 0.1 then 0.2 s (backoff, not immediate
    # redelivery). Not a ratio of the gaps: each also carries a redelivery latency of its own
    # (0.144 / 0.209 s seen on a quiet machine), which flattens the ratio.
    assert gaps[0] >= 0.08 and gaps[1] >= 0.18, gaps
    assert await pool.fetchval("SELECT n FROM effects WHERE event_id=$1", event.event_id) == 1


async def test_handler_that_always_fails_ends_in_dead_letters(settings, pool):
    await effects_table(pool)
    factory, attempts = effect_handler("broken", always_fail=True)
    async with Runtime(settings, ["broken", "dlq"], custom={"broken": (spec("broken", max_deliver=3), factory)}) as rt:
        event = approved()
        await rt.publisher.publish(event)
        row = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM dead_letters WHERE consumer='broken'"), what="dead letter"
        )
    assert len(attempts[event.event_id]) == 3
    assert row["reason"] == "max_deliveries"
    assert row["event_id"] == event.event_id
    assert row["subject"] == event.subject
    assert bytes(row["payload"]) == event.to_json()
    assert row["headers"]["Nats-Msg-Id"] == str(event.event_id)
    assert row["deliveries"] == 3
    assert "downstream unavailable" in row["last_error"]
    assert await pool.fetchval("SELECT count(*) FROM effects") == 0


async def test_invalid_event_is_terminated_to_dead_letters_and_worker_keeps_going(settings, pool):
    await effects_table(pool)
    factory, attempts = effect_handler("strict")
    async with Runtime(settings, ["strict", "dlq"], custom={"strict": (spec("strict"), factory)}) as rt:
        bad_id = str(uuid.uuid4())
        await rt.publisher.publish_raw("image.approved.elena.bad", b'{"type": "image.approved"}', {"Nats-Msg-Id": bad_id})
        good = approved()
        await rt.publisher.publish(good)
        row = await wait_until(lambda: pool.fetchrow("SELECT * FROM dead_letters WHERE consumer='strict'"))
        await wait_until(lambda: pool.fetchval("SELECT n FROM effects WHERE event_id=$1", good.event_id))
    assert row["reason"] == "terminated"
    assert row["deliveries"] == 1
    assert "InvalidEvent" in row["last_error"]
    assert bytes(row["payload"]) == b'{"type": "image.approved"}'


async def test_redelivery_after_crash_between_commit_and_ack_has_no_second_effect(settings, pool):
    """The handler commits its effect, then dies before the ack (simulated by raising after
    commit). JetStream redelivers; processed_events turns the second run into a no-op."""
    await effects_table(pool)
    runs: list[int] = []

    def factory(p: Ports):
        async def run(event: Envelope, d: Delivery) -> None:
            runs.append(d.deliveries)
            await record_effect(p, "crashy", event, d)
            if d.deliveries == 1:
                raise ConnectionResetError("process died after commit, before ack")

        return event_handler(run)

    async with Runtime(settings, ["crashy"], custom={"crashy": (spec("crashy"), factory)}) as rt:
        event = approved()
        await rt.publisher.publish(event)
        await wait_until(lambda: len(runs) >= 2, what="redelivery")
        info = await wait_until(
            lambda: _acked(rt, "crashy"), what="ack of the redelivered message"
        )
    assert info.num_ack_pending == 0
    assert await pool.fetchval("SELECT n FROM effects WHERE event_id=$1", event.event_id) == 1


async def _acked(rt: Runtime, consumer: str):
    info = await rt.ports.js.consumer_info(EVENTS_STREAM, consumer)
    return info if info.num_ack_pending == 0 and info.num_pending == 0 else None


async def test_outbox_relay_publishes_committed_rows_once_and_never_rolled_back_ones(settings, pool, js):
    await provision(js)
    broker = make_broker(settings.nats_url)
    await broker.connect()
    try:
        relay = OutboxRelay(pool, JetStreamPublisher(broker))
        committed, rolled_back = approved(), approved()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)",
                committed.event_id, committed.subject, committed.to_json(),
            )  # fmt: skip
        with pytest.raises(RuntimeError):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)",
                    rolled_back.event_id, rolled_back.subject, rolled_back.to_json(),
                )  # fmt: skip
                raise RuntimeError("the decision failed half-way")

        # The relay crashes after publishing but before marking the row: the row stays pending...
        with relay_dies_before_marking(relay):
            with pytest.raises(ConnectionResetError):
                await relay.publish_pending()
            assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
        # ...and the next pass publishes it again, which the stream deduplicates.
        assert await relay.publish_pending() == 1
        assert await relay.publish_pending() == 0
    finally:
        await broker.stop()
    info = await js.stream_info(EVENTS_STREAM)
    assert info.state.messages == 1
    msg = await js.get_msg(EVENTS_STREAM, info.state.last_seq)
    assert msg.headers["Nats-Msg-Id"] == str(committed.event_id)


async def test_outbox_relay_loop_wakes_on_notify(settings, pool):
    async with Runtime(settings, []) as rt:
        event = approved()
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)",
                event.event_id, event.subject, event.to_json(),
            )  # fmt: skip
        await wait_until(lambda: pool.fetchval("SELECT published_at FROM outbox WHERE event_id=$1", event.event_id))
        seq = (await rt.ports.js.stream_info(EVENTS_STREAM)).state.last_seq
        msg = await rt.ports.js.get_msg(EVENTS_STREAM, seq)
    assert msg.headers["Nats-Msg-Id"] == str(event.event_id)


async def test_two_workers_on_one_durable_split_the_work_without_duplicates(settings, pool):
    await effects_table(pool)
    seen: list[tuple[str, uuid.UUID]] = []
    fa, _ = effect_handler("shared", worker="a", log=seen)
    fb, _ = effect_handler("shared", worker="b", log=seen)
    async with Runtime(settings, ["shared"], custom={"shared": (spec("shared"), fa)}) as a, Runtime(
        settings, ["shared"], custom={"shared": (spec("shared"), fb)}
    ):
        events = [approved() for _ in range(60)]
        for e in events:
            await a.publisher.publish(e)
        await wait_until(lambda: _count(pool, 60), what="60 effects")
    by_worker = {w: sum(1 for x, _ in seen if x == w) for w in ("a", "b")}
    assert by_worker["a"] > 0 and by_worker["b"] > 0, by_worker
    assert len(seen) == 60 and len({e for _, e in seen}) == 60  # nobody saw an event twice
    assert await pool.fetchval("SELECT max(n) FROM effects") == 1


async def _count(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM effects") >= n


async def test_new_consumer_from_a_start_sequence_replays_only_what_follows(settings, pool, js):
    await provision(js)
    await effects_table(pool)
    async with Runtime(settings, []) as rt:
        events = [approved() for _ in range(10)]
        for e in events:
            await rt.publisher.publish(e)
    first_seq = (await js.stream_info(EVENTS_STREAM)).state.first_seq
    start = first_seq + 6
    seen: list[tuple[str, uuid.UUID]] = []
    factory, _ = effect_handler("replay", log=seen)
    replay = spec("replay", deliver_policy=DeliverPolicy.BY_START_SEQUENCE.value, opt_start_seq=start)
    async with Runtime(settings, ["replay"], custom={"replay": (replay, factory)}):
        await wait_until(lambda: _count(pool, 4), what="4 replayed effects")
        info = await wait_until(lambda: _drained(js, "replay"))
    assert [e for _, e in seen] == [e.event_id for e in events[6:]]
    assert info.delivered.stream_seq == first_seq + 9


async def _drained(js, consumer: str):
    info = await js.consumer_info(EVENTS_STREAM, consumer)
    return info if info.num_pending == 0 and info.num_ack_pending == 0 else None


async def test_provision_applies_changed_consumer_settings(js):
    s = spec("tunable", max_deliver=3, ack_wait_s=30)
    report = await provision(js, consumers={"tunable": s})
    assert report.consumers["tunable"] == "created"
    assert (await provision(js, consumers={"tunable": s})).consumers["tunable"] == "unchanged"
    changed = spec("tunable", max_deliver=7, ack_wait_s=45)
    assert (await provision(js, consumers={"tunable": changed})).consumers["tunable"] == "updated"
    info = await js.consumer_info(EVENTS_STREAM, "tunable")
    assert info.config.max_deliver == 7
    assert info.config.ack_wait == 45
    stream = await js.stream_info(EVENTS_STREAM)
    assert str(getattr(stream.config.retention, "value", stream.config.retention)) == "limits"
    assert stream.config.duplicate_window >= 120


async def test_the_relay_listens_again_after_postgresql_restarts(settings, js, pg_data_dir):
    """A PostgreSQL restart closes the relay's listening connection; the relay listens again
    on a new one, so a row committed afterwards is published on its NOTIFY, not by the next
    poll (30 s here, longer than this test waits)."""
    import asyncio

    from tests.databases import RELAY_LISTENING
    from vaultline.adapters.db import create_pool, migrate
    from vaultline.adapters.embedded.postgres import EmbeddedPostgres

    pg = EmbeddedPostgres(pg_data_dir, durable=False)
    url = await asyncio.to_thread(pg.start)
    await provision(js)
    broker = make_broker(settings.nats_url)
    await broker.connect()
    pool = stop = relay = None
    try:
        await migrate(url)
        pool = await create_pool(url)
        stop = asyncio.Event()
        relay = asyncio.ensure_future(OutboxRelay(pool, JetStreamPublisher(broker), poll_s=30).run(stop))

        async def listening() -> bool:
            try:
                return bool(await pool.fetchval(RELAY_LISTENING))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False  # still starting up

        async def committed_and_published(event: Envelope) -> None:
            async def insert() -> bool:
                try:
                    await pool.execute("INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3)",
                                       event.event_id, event.subject, event.to_json())  # fmt: skip
                    return True
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    return False  # still starting up

            # Listening (while it could not, it polled every 0.5 s: that would publish the row too).
            await wait_until(listening, timeout=20, interval=0.1, what="the relay listening")
            await wait_until(insert, timeout=10, interval=0.1, what="PostgreSQL to take the row")
            await wait_until(lambda: pool.fetchval("SELECT published_at FROM outbox WHERE event_id = $1", event.event_id),
                             timeout=10, what=f"{event.event_id} published on its NOTIFY")  # fmt: skip

        await committed_and_published(approved())
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(pg.start)  # same port: the pool's new connections reach it
        await committed_and_published(approved())
    finally:
        if stop is not None:
            stop.set()
            await asyncio.wait_for(relay, 10)
        if pool is not None:
            await pool.close()
        await broker.stop()
        await asyncio.to_thread(pg.stop)
