"""Sending content to fans, exactly once, on real PostgreSQL and the test Fanvue server over HTTP."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager

import pytest

from tests.fanvue_server import FanvueTestServer
from tests.waiting import wait_until
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.tokens import StaticTokenProvider
from vaultline.adapters.platforms import FanvuePlatform, LocalPlatform
from vaultline.domain import sends as rules
from vaultline.domain.errors import Conflict, Invalid
from vaultline.events import parse_event
from vaultline.handlers import sends

pytestmark = pytest.mark.integration

PHASH = "f0e1d2c3b4a59687"


def near(h: str, bits: int) -> str:
    return f"{int(h, 16) ^ ((1 << bits) - 1):016x}"


async def uploaded(pool, *, platform: str = "local", phash: str | None = None, media: str | None = None,
                   creator: str = "elena", vault: str = "ppv", category: str | None = None,
                   tags: list[str] | None = None) -> uuid.UUID:  # fmt: skip
    cid = uuid.uuid4()
    await pool.execute(
        """INSERT INTO content(id, creator, status, platform, fanvue_media_uuid, phash, vault, price_cents, category, tags,
                               uploaded_at, original_filename)
           VALUES ($1, $2, 'uploaded', $3, $4, $5, $6, 999, $7, $8, now(), 'x.png')""",
        cid, creator, platform, media or f"media-{cid}", phash or f"{uuid.uuid4().int & (2**64 - 1):016x}", vault,
        category, tags or [],
    )  # fmt: skip
    return cid


def req(*cids: uuid.UUID, fan: str = "fan-1", **kw) -> sends.SendRequest:
    return sends.SendRequest(creator="elena", fan_id=fan, content_ids=tuple(cids), sent_by="test", **kw)


async def outbox_events(pool, type_: str = "media.sent"):
    rows = await pool.fetch("SELECT body FROM outbox ORDER BY id")
    return [e for e in (parse_event(bytes(r["body"])) for r in rows) if e.type == type_]


@pytest.fixture
def fanvue():
    with FanvueTestServer() as server:
        yield server


@pytest.fixture
async def fanvue_platform(fanvue):
    client = FanvueClient(StaticTokenProvider(fanvue.issue_tokens()["access_token"]), creator="elena",
                          base_url=fanvue.base_url, timeout=0.5, backoff_base=0.01)  # fmt: skip
    yield FanvuePlatform(client)
    await client.aclose()


async def test_local_send_is_recorded_and_a_second_one_refused_naming_the_first(pool, tmp_path):
    platform = LocalPlatform(tmp_path / "messages")
    store = PostgresSendStore(pool)
    cid = await uploaded(pool, phash=PHASH)
    result = await sends.send(req(cid, price_cents=1299, text="for you"), store=store, platform=platform)
    assert result.status == "sent" and result.message_uuid
    row = await pool.fetchrow("SELECT * FROM sends WHERE content_id = $1", cid)
    assert (row["status"], row["message_uuid"], row["price_cents"], row["fan_id"]) == ("sent", result.message_uuid, 1299, "fan-1")
    [event] = await outbox_events(pool)
    assert event.key == str(cid) and event.payload.message_uuid == result.message_uuid and not event.payload.forced
    assert [m.uuid for m in await platform.fan_messages("fan-1")] == [result.message_uuid]
    assert await pool.fetchval("SELECT fan_ids FROM sent_to_users WHERE content_id = $1", cid) == ["fan-1"]

    with pytest.raises(Conflict) as refused:
        await sends.send(req(cid, price_cents=1299), store=store, platform=platform)
    assert str(cid) in refused.value.message and "already has" in refused.value.message
    assert row["sent_at"].strftime("%Y-%m-%d %H:%M") in refused.value.message
    assert len(await platform.fan_messages("fan-1")) == 1
    # Another fan may get it.
    assert (await sends.send(req(cid, fan="fan-2"), store=store, platform=platform)).status == "sent"


async def test_a_near_copy_is_refused_and_force_sends_it_with_the_reason_in_the_event(pool, tmp_path):
    platform = LocalPlatform(tmp_path / "messages")
    store = PostgresSendStore(pool)
    first = await uploaded(pool, phash=PHASH)
    copy = await uploaded(pool, phash=near(PHASH, 4))
    far = await uploaded(pool, phash=near(PHASH, 20))
    await sends.send(req(first), store=store, platform=platform)
    with pytest.raises(Conflict) as refused:
        await sends.send(req(copy, far), store=store, platform=platform)
    assert "near-copy (4 bits)" in refused.value.message and str(first) in refused.value.message
    assert await pool.fetchval("SELECT count(*) FROM sends WHERE content_id = ANY($1)", [copy, far]) == 0

    with pytest.raises(Conflict, match="near-copies of each other"):
        await sends.send(req(far, await uploaded(pool, phash=near(PHASH, 21)), fan="fan-2"), store=store, platform=platform)
    with pytest.raises(Invalid):
        await sends.send(req(copy, force=True), store=store, platform=platform)  # no reason
    forced = await sends.send(req(copy, force=True, reason="asked for it again"), store=store, platform=platform)
    assert forced.forced
    # Forcing the very same content again works too (a second live row, the next generation).
    again = await sends.send(req(first, force=True, reason="resend after a deleted chat"), store=store, platform=platform)
    assert again.status == "sent"
    events = {e.payload.content_id: e.payload for e in await outbox_events(pool)}
    assert events[copy].forced and events[copy].reason == "asked for it again"
    gens = await pool.fetch("SELECT generation, forced FROM sends WHERE content_id = $1 ORDER BY generation", first)
    assert [(g["generation"], g["forced"]) for g in gens] == [(0, False), (1, True)]


async def test_the_database_refuses_a_second_live_row_by_itself(pool):
    cid = await uploaded(pool)
    insert = """INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, status)
                VALUES ($1, $1, $2, 'elena', 'local', 'fan-1', $3)"""
    await pool.execute(insert, uuid.uuid4(), cid, "failed")
    await pool.execute(insert, uuid.uuid4(), cid, "reserved")
    import asyncpg

    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, uuid.uuid4(), cid, "sent")


async def test_the_unique_index_refusal_reaches_the_caller_naming_the_live_send(pool):
    cid = await uploaded(pool)
    await pool.execute(
        """INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, status, sent_at)
           VALUES ($1, $1, $2, 'elena', 'local', 'fan-1', 'sent', '2026-11-02 10:30+00')""",
        uuid.uuid4(), cid,
    )  # fmt: skip
    store = PostgresSendStore(pool)
    row = sends.NewSend(uuid.uuid4(), uuid.uuid4(), cid, "m", None, None, 0, False, None, None)
    with pytest.raises(Conflict, match=f"already has content {cid} \\(sent 2026-11-02 10:30 UTC\\)"):
        async with store.for_fan("elena", "local", "fan-1") as tx:
            await tx.reserve([row])
    assert await pool.fetchval("SELECT count(*) FROM sends") == 1


def new_send(cid: uuid.UUID) -> sends.NewSend:
    return sends.NewSend(uuid.uuid4(), uuid.uuid4(), cid, "m", None, None, 0, False, None, None)


async def test_a_sender_whose_check_went_stale_reserves_nothing_and_its_next_check_sees_why(pool):
    """Two senders check one fan at once; the first reserves. The second's reservation moves
    no version (another send got in since its read), inserts nothing, and its next check sees
    the first one's row: the near-copy is refused by the guard (the unique index cannot)."""
    store = PostgresSendStore(pool)
    first, copy = await uploaded(pool, phash=PHASH), await uploaded(pool, phash=near(PHASH, 3))
    async with store.for_fan("elena", "local", "fan-1") as a, store.for_fan("elena", "local", "fan-1") as b:
        assert await a.history() == [] and await b.history() == []
        await a.reserve([new_send(first)])
        with pytest.raises(sends.HistoryChanged):
            await b.reserve([new_send(copy)])
        [c] = await b.contents("elena", [copy])  # checks again
        [violation] = rules.guard([rules.Candidate(copy, c.phash)], await b.history())
    assert violation.prior.content_id == first and violation.distance == 3 and violation.prior.status == "reserved"
    assert await pool.fetchval("SELECT count(*) FROM sends") == 1
    assert await pool.fetchval("SELECT version FROM send_guard_versions WHERE fan_id = 'fan-1'") == 1


async def test_two_reservations_at_the_same_moment_are_serialised_by_the_fans_version(pool):
    """The second reservation of two from the same read waits for the first's transaction and
    then inserts nothing: READ COMMITTED re-checks the version against the row the first
    committed (a plain check of the sends in the same statement would not see that row)."""
    import asyncio

    from vaultline.adapters.db.sends import PostgresFanTx

    first, copy = await uploaded(pool, phash=PHASH), await uploaded(pool, phash=near(PHASH, 3))
    async with PostgresSendStore(pool).for_fan("elena", "local", "fan-1") as tx:
        await tx.reserve([new_send(await uploaded(pool))])  # the fan is at version 1
    waiting = """SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE NOT l.granted AND a.datname = current_database()"""
    holder, other = await pool.acquire(), await pool.acquire()
    try:
        a, b = PostgresFanTx(holder, "elena", "local", "fan-1"), PostgresFanTx(other, "elena", "local", "fan-1")
        assert len(await a.history()) == len(await b.history()) == 1  # both read version 1
        async with holder.transaction():  # the first reservation, not yet committed
            await a.reserve([new_send(first)])
            late = asyncio.ensure_future(b.reserve([new_send(copy)]))
            await wait_until(lambda: pool.fetchval(waiting), what="the second reservation waiting for the first")
            assert not late.done()
        with pytest.raises(sends.HistoryChanged):
            await asyncio.wait_for(late, 15)
    finally:
        await pool.release(holder)
        await pool.release(other)
    assert {r["content_id"] for r in await pool.fetch("SELECT content_id FROM sends")} >= {first}
    assert await pool.fetchval("SELECT count(*) FROM sends WHERE content_id = $1", copy) == 0
    assert await pool.fetchval("SELECT version FROM send_guard_versions WHERE fan_id = 'fan-1'") == 2


async def test_a_send_recorded_from_the_stream_moves_the_fans_version_too(pool):
    """The sales handler records a media.sent it had no row for (a send made elsewhere) while
    a check is between its read and its reservation: the reservation inserts nothing."""
    from datetime import datetime, timezone

    from vaultline.adapters.db.sales import PostgresSalesStore
    from vaultline.events import new_event

    first, copy = await uploaded(pool, phash=PHASH), await uploaded(pool, phash=near(PHASH, 3))
    sent = new_event("media.sent", creator="elena", key=first, occurred_at=datetime.now(timezone.utc), payload={
        "platform": "local", "fan_id": "fan-1", "content_id": first, "message_uuid": "m-elsewhere",
        "price_cents": 999, "sent_by": "ann"})  # fmt: skip
    async with PostgresSendStore(pool).for_fan("elena", "local", "fan-1") as tx:
        assert await tx.history() == []
        async with PostgresSalesStore(pool).transaction() as sales_tx:
            await sales_tx.record_send(sent, sent.payload)
        with pytest.raises(sends.HistoryChanged):
            await tx.reserve([new_send(copy)])
        [c] = await tx.contents("elena", [copy])
        assert rules.guard([rules.Candidate(copy, c.phash)], await tx.history())  # refused now


async def test_a_check_holds_nothing_and_a_reservation_without_a_read_reads_the_version_first(pool):
    store, cid, other = PostgresSendStore(pool), await uploaded(pool), await uploaded(pool)
    with pytest.raises(Conflict):
        async with store.for_fan("elena", "local", "fan-1") as tx:
            await tx.contents("elena", [cid])
            raise Conflict("refused")
    async with store.for_fan("elena", "local", "fan-1") as tx:
        await tx.reserve([new_send(cid)])  # no read before: it reads the version (0, no row) itself
    async with store.for_fan("elena", "local", "fan-1") as tx:
        await tx.reserve([new_send(other)])  # version 1 now
    assert await pool.fetchval("SELECT count(*) FROM sends WHERE status = 'reserved'") == 2
    assert await pool.fetchval("SELECT version FROM send_guard_versions WHERE fan_id = 'fan-1'") == 2
    assert await pool.fetchval("SELECT count(*) FROM fans WHERE fan_id = 'fan-1'") == 1
    assert await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_a_send_whose_reservation_lost_the_race_checks_again_and_is_refused(pool, tmp_path):
    """Through the use case: another sender reserves a near-copy for the fan between this
    send's check and its reservation; the send checks again and is refused naming it."""
    first, copy = await uploaded(pool, phash=PHASH), await uploaded(pool, phash=near(PHASH, 3))

    class RacedStore(PostgresSendStore):
        """The real store; its first check is overtaken by another sender's reservation."""

        checks = 0

        @asynccontextmanager
        async def for_fan(self, *key):
            async with super().for_fan(*key) as tx:
                self.checks += 1
                if self.checks == 1:  # the rival reserves after this check's read, before its reservation
                    reserve = tx.reserve

                    async def overtaken(rows):
                        async with PostgresSendStore(pool).for_fan(*key) as rival:
                            await rival.reserve([new_send(first)])
                        await reserve(rows)

                    tx.reserve = overtaken
                yield tx

    store = RacedStore(pool)
    with pytest.raises(Conflict, match=f"{first}"):
        await sends.send(req(copy), store=store, platform=LocalPlatform(tmp_path / "m"))
    assert store.checks == 2
    assert [r["content_id"] for r in await pool.fetch("SELECT content_id FROM sends")] == [first]


async def test_bad_requests_change_nothing(pool, tmp_path):
    platform, store = LocalPlatform(tmp_path / "m"), PostgresSendStore(pool)
    cid = await uploaded(pool)
    await pool.execute("UPDATE content SET status = 'approved' WHERE id = $1", cid)
    with pytest.raises(Invalid, match="not uploaded"):
        await sends.send(req(cid), store=store, platform=platform)
    with pytest.raises(Invalid, match="at least 300"):
        await sends.send(req(cid, price_cents=200), store=store, platform=platform)
    with pytest.raises(Invalid, match="fan"):
        await sends.send(req(cid, fan="not a fan!"), store=store, platform=platform)
    other = await uploaded(pool, creator="mara")
    with pytest.raises(Invalid, match="belongs to creator mara"):
        await sends.send(req(other), store=store, platform=platform)
    assert await pool.fetchval("SELECT count(*) FROM sends") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_fanvue_send_carries_media_price_and_text(pool, fanvue, fanvue_platform):
    [media] = fanvue.add_ready_media()
    cid = await uploaded(pool, platform="fanvue", media=media)
    result = await sends.send(req(cid, price_cents=1299, text="just for you"), store=PostgresSendStore(pool), platform=fanvue_platform)
    [msg] = fanvue.sent_messages("fan-1")
    assert msg["uuid"] == result.message_uuid and msg["mediaUuids"] == [media]
    assert msg["pricing"] == {"USD": {"price": 1299}} and msg["text"] == "just for you"


async def test_a_fanvue_refusal_releases_the_row_with_fanvues_message(pool, fanvue, fanvue_platform):
    [media] = fanvue.add_ready_media()
    cid = await uploaded(pool, platform="fanvue", media=media)
    fanvue.uncontactable.add("fan-1")
    with pytest.raises(Invalid, match="User cannot be contacted"):
        await sends.send(req(cid), store=PostgresSendStore(pool), platform=fanvue_platform)
    assert await pool.fetchval("SELECT status FROM sends WHERE content_id = $1", cid) == "failed"
    fanvue.uncontactable.clear()
    assert (await sends.send(req(cid), store=PostgresSendStore(pool), platform=fanvue_platform)).status == "sent"
    assert fanvue.count("chats.send") == 2 and len(fanvue.sent_messages("fan-1")) == 1


@pytest.mark.parametrize("listed", [True, False], ids=["media-listed", "media-not-listed"])
async def test_timeout_after_commit_is_reconciled_as_sent_without_a_second_message(pool, fanvue, fanvue_platform, listed):
    fanvue.list_media_uuids = listed  # without the list: found by media + price + text
    media = fanvue.add_ready_media(2)
    a = await uploaded(pool, platform="fanvue", media=media[0])
    b = await uploaded(pool, platform="fanvue", media=media[1])
    fanvue.hang_after_commit("chats.send", delay=3.0)
    result = await sends.send(req(a, b, price_cents=999), store=PostgresSendStore(pool), platform=fanvue_platform)
    [msg] = fanvue.sent_messages("fan-1")
    assert result.status == "sent" and result.reconciled and result.message_uuid == msg["uuid"]
    assert fanvue.count("chats.send") == 1 and fanvue.count("chats.messages") == 1
    rows = await pool.fetch("SELECT status, message_uuid FROM sends ORDER BY content_id")
    assert {(r["status"], r["message_uuid"]) for r in rows} == {("sent", msg["uuid"])}
    assert {e.payload.content_id for e in await outbox_events(pool)} == {a, b}
    with pytest.raises(Conflict):
        await sends.send(req(a), store=PostgresSendStore(pool), platform=fanvue_platform)
    assert fanvue.count("chats.send") == 1


async def test_an_ambiguous_failure_that_did_not_deliver_is_released(pool, fanvue, fanvue_platform):
    [media] = fanvue.add_ready_media()
    cid = await uploaded(pool, platform="fanvue", media=media)
    fanvue.inject("500", endpoint="chats.send")  # 5xx on a POST: Fanvue may or may not have stored it
    with pytest.raises(Conflict, match="nothing was delivered"):
        await sends.send(req(cid), store=PostgresSendStore(pool), platform=fanvue_platform)
    assert await pool.fetchval("SELECT status FROM sends WHERE content_id = $1", cid) == "failed"
    assert (await sends.send(req(cid), store=PostgresSendStore(pool), platform=fanvue_platform)).status == "sent"
    assert len(fanvue.sent_messages("fan-1")) == 1


async def test_an_unknown_send_left_behind_is_reconciled_before_the_next_send(pool, fanvue, fanvue_platform):
    """A process died after Fanvue stored the message but before we recorded it."""
    [media] = fanvue.add_ready_media()
    cid = await uploaded(pool, platform="fanvue", media=media)
    store = PostgresSendStore(pool)
    # Reserve as the dead process did, then let the message reach Fanvue without our knowing.
    fanvue.hang_after_commit("chats.send", delay=3.0)
    fanvue.inject("error", n=4, endpoint="chats.messages", status=503, body={"message": "down"})  # past the retries
    with pytest.raises(Conflict, match="could not be read"):
        await sends.send(req(cid), store=store, platform=fanvue_platform)
    assert await pool.fetchval("SELECT status FROM sends WHERE content_id = $1", cid) == "unknown"
    # The retry reads the fan's messages first: the message is there, so it is a duplicate now.
    with pytest.raises(Conflict, match="already has"):
        await sends.send(req(cid), store=store, platform=fanvue_platform)
    assert await pool.fetchval("SELECT status FROM sends WHERE content_id = $1", cid) == "sent"
    assert fanvue.count("chats.send") == 1 and len(fanvue.sent_messages("fan-1")) == 1
    assert len(await outbox_events(pool)) == 1


async def test_suggest_ppv_and_simulated_purchase(pool, tmp_path):
    from vaultline.adapters.db.sales import PostgresSendReads

    platform, store = LocalPlatform(tmp_path / "m"), PostgresSendStore(pool)
    had = await uploaded(pool, phash=PHASH, category="lingerie")
    copy = await uploaded(pool, phash=near(PHASH, 2), category="lingerie")
    fresh = await uploaded(pool, category="beach")
    feed = await uploaded(pool, vault="feed")
    sent = await sends.send(req(had, price_cents=999), store=store, platform=platform)
    got = await sends.suggest_ppv(PostgresSendReads(pool), creator="elena", platform="local", fan_id="fan-1")
    ids = [s.content_id for s in got]
    assert fresh in ids and had not in ids and copy not in ids and feed not in ids

    event = await sends.simulate_purchase(store, sent.message_uuid)
    assert event.payload.gross_cents == 999 and event.payload.source == "local" and event.payload.content_id == had
    again = await sends.simulate_purchase(store, sent.message_uuid)
    assert again.event_id == event.event_id
    assert len(await outbox_events(pool, "sale.recorded")) == 1
    with pytest.raises(Exception, match="no sent message"):
        await sends.simulate_purchase(store, "nope")


async def test_two_processes_sending_the_same_content_make_one_platform_call(pool, fanvue, tmp_path, migrated_db):
    """Two `vaultline send` processes at once, against real PostgreSQL and the test Fanvue."""
    import asyncio
    import os
    import sys
    import time

    from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenSet, load_cipher

    [media] = fanvue.add_ready_media()
    cid = await uploaded(pool, platform="fanvue", media=media)
    await PostgresTokenStore(pool, load_cipher(tmp_path)).save(
        "elena", TokenSet.from_token_response(fanvue.issue_tokens(), now=time.time())
    )
    gate = fanvue.hold("chats.send")  # the first call waits inside Fanvue while the second process tries
    env = {**os.environ, "VAULTLINE_DATABASE_URL": migrated_db, "VAULTLINE_FANVUE_BASE_URL": fanvue.base_url,
           "VAULTLINE_DATA_DIR": str(tmp_path)}  # fmt: skip
    cmd = [sys.executable, "-m", "vaultline", "send", str(cid), "--to", "fan-1", "--price", "999", "--creator", "elena", "--json"]
    procs = [
        await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for _ in range(2)
    ]
    # The first to finish is the one refused while the other waits inside Fanvue.
    waits = [asyncio.ensure_future(p.wait()) for p in procs]
    done, _ = await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert done, "neither process finished"
    gate.release()
    results = [await p.communicate() + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 3], results
    refused = next(r for r in results if r[2] == 3)
    assert str(cid) in refused[1].decode() and "being sent" in refused[1].decode()
    ok = json.loads(next(r for r in results if r[2] == 0)[0])
    assert ok["status"] == "sent"
    assert fanvue.count("chats.send") == 1 and len(fanvue.sent_messages("fan-1")) == 1
    assert await pool.fetchval("SELECT count(*) FROM sends WHERE status <> 'failed'") == 1


async def test_a_platform_call_past_the_send_deadline_is_reconciled(pool, fanvue, monkeypatch):
    """The client would wait longer (rate-limit pauses, a slow Fanvue): the send gives up at its
    own deadline, well before another sender would treat the reservation as stale."""
    from datetime import timedelta

    from vaultline.domain import sends as rules

    monkeypatch.setattr(rules, "SEND_DEADLINE", timedelta(seconds=0.5))
    client = FanvueClient(StaticTokenProvider(fanvue.issue_tokens()["access_token"]), base_url=fanvue.base_url, timeout=30)
    try:
        [media] = fanvue.add_ready_media()
        cid = await uploaded(pool, platform="fanvue", media=media)
        fanvue.hang_after_commit("chats.send", delay=2.0)
        result = await sends.send(req(cid), store=PostgresSendStore(pool), platform=FanvuePlatform(client))
        assert result.status == "sent" and result.reconciled
        assert result.message_uuid == fanvue.sent_messages("fan-1")[0]["uuid"] and fanvue.count("chats.send") == 1
    finally:
        await client.aclose()


async def test_suggest_ppv_sql_candidates_agree_with_the_pure_rule(pool):
    """The chat/suggest-ppv fast path (PostgreSQL drops what the fan has, exact or a near-copy by
    bit_count, and rows that cannot make the top) gives exactly what domain.sends.suggest gives
    over every offerable row: same items, same order, same scores and price."""
    import random
    from datetime import timedelta

    from vaultline.adapters.db.sales import PostgresSendReads, bought, offerable
    from vaultline.adapters.db.sends import fan_history
    from vaultline.domain import sends as rules
    from vaultline.domain.similarity import NEAR_DUPLICATE_DISTANCE as NEAR
    from vaultline.events import utcnow

    rng = random.Random(3)
    now = utcnow()
    cats, tags = ["beach", "lingerie", "gym", None, ""], ["red", "blue", "sun", "lace", "x"]
    ids, hashes = [], []
    for i in range(80):
        h = f"{rng.getrandbits(64):016x}"
        cid = await uploaded(pool, phash=h, category=rng.choice(cats), tags=rng.sample(tags, rng.randint(0, 3)))
        ids.append(cid)
        hashes.append(h)
        # a few share an upload time (ties broken by id), the rest spread over ten weeks
        await pool.execute("UPDATE content SET uploaded_at = $2 WHERE id = $1", cid,
                           now - timedelta(days=7 if i % 9 == 0 else rng.uniform(0, 70)))  # fmt: skip
    for _ in range(6):  # the freshest: one score for all six (same upload time), so the order is by id
        cid = await uploaded(pool, category="gym", tags=["sun"])
        await pool.execute("UPDATE content SET uploaded_at = $2 WHERE id = $1", cid, now)
    # near-copies of what fan-1 gets: at the threshold (excluded) and one bit past it (offered)
    at_limit = await uploaded(pool, phash=near(hashes[0], NEAR), category="beach")
    past_limit = await uploaded(pool, phash=near(hashes[1], NEAR + 1), category="beach", tags=["red"])
    upper = await uploaded(pool, phash=near(hashes[2], 3).upper(), category="gym")  # same hash, other case
    await uploaded(pool, vault="feed")  # never offerable
    await uploaded(pool, platform="fanvue")  # another platform

    async def give(fan: str, cid: uuid.UUID, *, status: str = "sent", bought_: bool = False) -> None:
        await pool.execute(
            """INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, media_uuid, message_uuid,
                                 price_cents, status, reserved_at, sent_at, purchased_at)
               VALUES ($1, $1, $2, 'elena', 'local', $3, 'm', $4, 999, $5, now(), now(),
                       CASE WHEN $6 THEN now() END)""",
            uuid.uuid4(), cid, fan, str(uuid.uuid4()), status, bought_,
        )  # fmt: skip

    for k in range(8):
        await give("fan-1", ids[k], bought_=k % 2 == 0)
    await give("fan-1", ids[20], status="failed")  # a failed send is not "has"
    for k in range(30, 36):
        await give("fan-2", ids[k], bought_=True)

    async def pure(fan: str, limit: int) -> list[rules.Suggestion]:
        return rules.suggest(await offerable(pool, "elena", "local"), await fan_history(pool, "elena", "local", fan),
                             await bought(pool, "elena", "local", fan), spend_cents=6_000, now=now, limit=limit)  # fmt: skip

    await pool.execute("INSERT INTO fans(creator, platform, fan_id, lifetime_spend_cents) VALUES "
                       "('elena', 'local', 'fan-1', 6000), ('elena', 'local', 'fan-2', 6000), "
                       "('elena', 'local', 'fan-3', 6000)")  # fmt: skip
    reads = PostgresSendReads(pool)
    for fan in ("fan-1", "fan-2", "fan-3"):
        everything = await pure(fan, 1000)
        # eligibility alone (no cut): SQL keeps exactly what the rule keeps
        kept = await offerable(pool, "elena", "local", fan_id=fan, now=now, top=10_000)
        assert {o.content_id for o in kept} == {s.content_id for s in everything}, fan
        for limit in (1, 3, 10, 50):
            fast = await sends.suggest_ppv(reads, creator="elena", platform="local", fan_id=fan, now=now, limit=limit)
            assert fast == everything[:limit], (fan, limit)
        cut = await offerable(pool, "elena", "local", fan_id=fan, now=now, top=3)
        assert len(cut) < len(everything)  # the point of it: Python sees fewer rows
    fan1 = {s.content_id for s in await pure("fan-1", 1000)}
    assert at_limit not in fan1 and past_limit in fan1 and upper not in fan1 and ids[20] in fan1
    assert not fan1 & set(ids[:8])

    # a hash PostgreSQL cannot read as 64 bits: every row comes back and the rule decides
    await uploaded(pool, phash="abc", category="beach")
    assert len(await offerable(pool, "elena", "local", fan_id="fan-1", now=now, top=1)) == len(
        await offerable(pool, "elena", "local"))
    fast = await sends.suggest_ppv(reads, creator="elena", platform="local", fan_id="fan-1", now=now, limit=5)
    assert fast == (await pure("fan-1", 5))
