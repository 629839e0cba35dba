"""`vaultline replay` and `vaultline audit export` against real NATS + PostgreSQL: a realistic run
(images through the tracker, a send and a sale through the sales handler, live durables)
rebuilds into a fresh schema with no differences; a tampered row is exactly the difference;
--swap makes the rebuild live; one handler re-runs from a seq idempotently."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bench.replay import image_run
from tests.children import vl
from tests.integration.test_sends import req
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.adapters.platforms import LocalPlatform
from vaultline.bootstrap import Runtime
from vaultline.entrypoints import replay
from vaultline.events import new_event
from vaultline.handlers import sends

pytestmark = pytest.mark.integration


def image_events(n: int, creator: str = "elena") -> tuple[list, list[uuid.UUID]]:
    """The events of n images from generation to upload, as the pipeline emits them."""
    ids = [uuid.uuid4() for _ in range(n)]
    return [e for i, cid in enumerate(ids) for e in image_run(cid, creator, i)], ids


@pytest.fixture
async def seeded(settings, pool, tmp_path):
    """A run through the live handlers: 3 images projected by the tracker, one image sent to a fan
    (send use case -> outbox -> relay -> media.sent), the fan's purchase and a follow through
    the sales handler; analytics counts all of it."""
    async with Runtime(settings, ["tracker", "sales", "analytics"]) as rt:
        events, ids = image_events(3)
        for e in events:
            await rt.publisher.publish(e)
        await wait_until(lambda: _count(pool, "SELECT count(*) FROM content WHERE status = 'uploaded'", 3), timeout=30)
        result = await sends.send(req(ids[0], fan="fan-1", price_cents=999), store=PostgresSendStore(pool),
                                  platform=LocalPlatform(tmp_path / "m"))  # fmt: skip
        sold = new_event("sale.recorded", creator="elena", key=uuid.uuid4(), payload={
            "dedupe_key": f"local:purchase:{result.message_uuid}", "kind": "purchase", "gross_cents": 999,
            "platform": "local", "source": "local", "sold_at": datetime.now(timezone.utc), "fan_id": "fan-1",
            "route_uuid": result.message_uuid, "fan": {"handle": "fan_one"}})  # fmt: skip
        followed = new_event("fan.followed", creator="elena", key="fan-2",
                             payload={"platform": "local", "fan_id": "fan-2", "fan": {"handle": "two"}})
        await wait_until(lambda: _count(pool, "SELECT count(*) FROM processed_events WHERE handler = 'sales'", 1),
                         timeout=30)  # fmt: skip
        await rt.publisher.publish(sold)
        await rt.publisher.publish(followed)
        await wait_until(lambda: _count(pool, "SELECT count(*) FROM processed_events WHERE handler = 'sales'", 3),
                         timeout=30)  # fmt: skip
        await wait_until(lambda: _count(pool, "SELECT count(*) FROM processed_events WHERE handler = 'analytics'",
                                        3 * 4 + 3), timeout=30)  # fmt: skip
    assert await pool.fetchval("SELECT times_purchased FROM content WHERE id = $1", ids[0]) == 1
    return ids


async def _count(pool, sql: str, n: int) -> bool:
    return await pool.fetchval(sql) >= n


async def test_rebuild_equals_live_then_a_tampered_row_is_exactly_the_difference_and_swap_heals(settings, pool, seeded):
    clean = await vl(settings, "replay", "--rebuild", "--json")
    assert clean.exit_code == 0, clean.output
    report = json.loads(clean.stdout)
    assert report["events"] == 3 * 4 + 3 and report["differences"] == 0
    assert report["tables"]["content"] == {"live_rows": 3, "rebuilt_rows": 3, "differences": 0}
    assert report["tables"]["sends"]["live_rows"] == 1 and report["tables"]["sales"]["live_rows"] == 1
    assert report["tables"]["fans"]["live_rows"] == 2
    schemas = {r[0] for r in await pool.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rebuild_%'")}
    assert not schemas  # dropped unless --keep / --swap

    await pool.execute("UPDATE content SET revenue_cents = 5 WHERE id = $1", seeded[1])
    tampered = await vl(settings, "replay", "--rebuild")
    assert tampered.exit_code == 1
    assert f"content id={seeded[1]}: revenue_cents: live=5 rebuilt=0" in tampered.output
    as_json = await vl(settings, "replay", "--rebuild", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["differences"] == 1
    assert json.loads(as_json.stdout)["tables"]["content"]["differences"] == 1

    await pool.execute("UPDATE fans SET notes = 'vip' WHERE fan_id = 'fan-1'")  # operator input survives a swap
    swapped = await vl(settings, "replay", "--rebuild", "--swap")
    assert swapped.exit_code == 1  # it reports the difference it is about to heal
    assert "replay_backup_" in swapped.output
    await pool.expire_connections()
    assert await pool.fetchval("SELECT revenue_cents FROM content WHERE id = $1", seeded[1]) == 0
    assert await pool.fetchval("SELECT notes FROM fans WHERE fan_id = 'fan-1'") == "vip"
    backup = await pool.fetchval("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'replay_backup_%'")
    assert await pool.fetchval(f"SELECT revenue_cents FROM {backup}.content WHERE id = $1", seeded[1]) == 5
    again = await vl(settings, "replay", "--rebuild", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["differences"] == 0


async def test_replay_handler_is_a_no_op_when_up_to_date_and_reapplies_deleted_bookkeeping(settings, pool, seeded):
    before = await pool.fetchval("SELECT times_purchased FROM content WHERE id = $1", seeded[0])
    noop = await vl(settings, "replay", "--handler", "tracker", "--from-seq", "5", "--json")
    assert noop.exit_code == 0, noop.output
    # seqs 5-12: images 2 and 3; 13: the media.sent (media.> is the tracker's too); 14-15 are not its.
    assert json.loads(noop.stdout) == {"handler": "tracker", "seen": 9, "applied": 0, "skipped": 9, "failed": []}

    # The tracker's rows for image 3 (seqs 9-12) are lost, with the projection reset: re-applied.
    await pool.execute("DELETE FROM processed_events WHERE handler = 'tracker' AND stream_seq BETWEEN 9 AND 12")
    await pool.execute("DELETE FROM content WHERE id = $1", seeded[2])
    redo = await vl(settings, "replay", "--handler", "tracker", "--from-seq", "5")
    assert redo.exit_code == 0, redo.output
    assert "9 events seen, 4 applied, 5 skipped" in redo.output
    assert await pool.fetchval("SELECT status FROM content WHERE id = $1", seeded[2]) == "uploaded"
    assert await pool.fetchval("SELECT times_purchased FROM content WHERE id = $1", seeded[0]) == before

    since = await vl(settings, "replay", "--handler", "sales", "--since", "2000-01-01T00:00:00Z", "--json")
    assert json.loads(since.stdout)["seen"] == 3 and json.loads(since.stdout)["skipped"] == 3
    bad = await vl(settings, "replay", "--handler", "upload", "--from-seq", "1")
    assert bad.exit_code == 2 and "cannot be replayed" in bad.output


async def test_audit_export_window_boundaries_and_history_causation(settings, js, pool):
    from vaultline.adapters.bus.provision import provision

    await provision(js)
    events, ids = image_events(2)
    for e in events[:4]:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    await wait_until(lambda: _count_stored(js, 4), timeout=5)
    cut = datetime.now(timezone.utc)  # after the 4th event was stored, before the 5th
    await wait_until(lambda: _after(cut + timedelta(milliseconds=5)), timeout=5)
    for e in events[4:]:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    stored = [se async for se in read_events(js)]
    first, second = stored[0].stored_at - timedelta(microseconds=1), stored[4].stored_at
    assert stored[3].stored_at < cut <= second

    def iso(t: datetime) -> str:
        return t.isoformat()

    window = await vl(settings, "audit", "export", "--since", iso(first), "--until", iso(cut))
    rows = [json.loads(line) for line in window.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["subject"] == events[0].subject and rows[0]["event_id"] == str(events[0].event_id)
    assert rows[1]["causation_id"] == str(events[0].event_id) and rows[0]["stored_at"]
    tail = await vl(settings, "audit", "export", "--since", iso(cut), "--until", iso(second + timedelta(seconds=1)))
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [5, 6, 7, 8]
    other = await vl(settings, "audit", "export", "--since", iso(first), "--until", iso(cut), "--creator", "mia")
    assert other.stdout == ""
    wrong = await vl(settings, "audit", "export", "--since", iso(cut), "--until", iso(first))
    assert wrong.exit_code == 2

    history = await vl(settings, "history", str(ids[0]))
    assert history.exit_code == 0
    # Each step names the event that caused it: the causation chain.
    assert "#1 image.generated" in history.output and "#3 image.approved" in history.output


async def _count_stored(js, n: int) -> bool:
    return (await js.stream_info("EVENTS")).state.messages >= n


async def _after(t: datetime) -> bool:
    return datetime.now(timezone.utc) > t


async def test_an_event_a_handler_refuses_is_reported_and_the_rest_of_its_batch_is_projected(settings, js, pool):
    """As live (where it becomes a dead letter), a poison event is left out, not the batch."""
    from vaultline.adapters.bus.provision import provision

    await provision(js)
    events, ids = image_events(2)
    poison = new_event("image.generated", creator="elena", key="not-a-uuid", payload=events[0].payload)
    for e in [*events[:4], poison, *events[4:]]:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    result = await replay.rebuild(settings, keep=False)
    await replay.drop(settings, result.schema)
    assert result.events == 9
    assert [(f["seq"], f["type"]) for f in result.failed] == [(5, "image.generated")]
    assert "not a content id" in result.failed[0]["error"]
    t = result.tables["content"]
    assert (t.live_rows, t.rebuilt_rows) == (0, 2)  # nothing live: both images are differences
    assert {d["key"]["id"] for d in t.differences} == {str(i) for i in ids}
    assert {d["kind"] for d in t.differences} == {"only_rebuilt"}


def _child_pids(marker: bytes) -> list[int]:
    """This process's children whose command line contains `marker`."""
    import os
    from pathlib import Path

    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                if marker in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
        except OSError:
            continue
    return found


async def test_a_projection_rebuilt_in_its_own_process_that_dies_fails_the_rebuild_and_leaves_no_schema(
        settings, js, pool, monkeypatch):  # fmt: skip
    """Analytics is rebuilt in a child process (Replayable.own_process): when that process dies,
    the rebuild fails naming it, nothing is compared, and keep=False drops the schema."""
    import os
    import signal

    from vaultline.adapters.bus.provision import provision

    await provision(js)
    events, _ = image_events(10)
    for e in events:
        await js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})
    # Read and fed in lists of 4 (40 events): at the first progress call the end of the stream has
    # not been handed to the child yet (it gets the reader's lists as this process reads them, at
    # most 4 batches ahead), so it is still running when it is killed.
    monkeypatch.setattr(replay, "BATCH", 4)
    monkeypatch.setattr(replay, "READ_BATCH", 4)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not killed:
            killed.extend(_child_pids(b"vaultline.entrypoints.replay"))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    before = {r["nspname"] for r in await pool.fetch("SELECT nspname FROM pg_namespace")}
    with pytest.raises(RuntimeError, match="analytics projection's rebuild process failed"):
        await replay.rebuild(settings, progress=progress, keep=False)
    assert len(killed) == 1
    assert {r["nspname"] for r in await pool.fetch("SELECT nspname FROM pg_namespace")} == before


async def test_every_table_is_either_rebuilt_from_events_or_listed_as_not_compared(pool):
    """A new migration's table must be classified: a projection in bootstrap.REPLAYABLE, or in
    adapters/db/rebuild.py NOT_COMPARED with the reason."""
    from vaultline.adapters.db.rebuild import NOT_COMPARED
    from vaultline.bootstrap import REPLAYABLE

    tables = {r[0] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    projected = {t.name for r in REPLAYABLE.values() for t in r.tables}
    assert tables - projected - set(NOT_COMPARED) == set()
