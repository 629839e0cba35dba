"""`vaultline dlq list|show|retry|drop` against real NATS + PostgreSQL: a retried dead letter is
processed once, and retrying an event that was in fact processed has no second effect."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.children import vl
from tests.integration.test_bus import effects_table, record_effect
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import Delivery, event_handler
from vaultline.adapters.bus.topology import ConsumerSpec
from vaultline.bootstrap import Ports, Runtime
from vaultline.events import Envelope, new_event

pytestmark = pytest.mark.integration


def counting_handler(broken: dict[str, bool]):
    def factory(p: Ports):
        async def run(event: Envelope, d: Delivery) -> None:
            if broken["now"]:
                raise ConnectionError("downstream unavailable")
            await record_effect(p, "counted", event, d)

        return event_handler(run)

    return factory


async def test_retry_republishes_once_and_a_processed_event_has_no_second_effect(settings, pool):
    await effects_table(pool)
    broken = {"now": True}
    spec = ConsumerSpec("counted", ("image.approved.>",), max_deliver=2)
    event = new_event("image.approved", creator="elena", key=uuid.uuid4(), payload={"vault": "feed"})
    async with Runtime(settings, ["counted", "dlq"], custom={"counted": (spec, counting_handler(broken))}) as rt:
        await rt.publisher.publish(event)
        dead_id = await wait_until(lambda: pool.fetchval("SELECT id FROM dead_letters WHERE consumer='counted'"),
                                   timeout=30, what="the dead letter")  # fmt: skip

        listed = await vl(settings, "dlq", "list", "--json")
        assert listed.exit_code == 0, listed.output
        (row,) = json.loads(listed.stdout)
        assert row["id"] == dead_id and row["event_id"] == str(event.event_id) and row["reason"] == "max_deliveries"
        shown = await vl(settings, "dlq", "show", str(dead_id))
        assert json.loads(shown.stdout)["payload"]["event_id"] == str(event.event_id)

        broken["now"] = False  # the operator fixed the cause
        retried = await vl(settings, "dlq", "retry", str(dead_id), "--json")
        assert retried.exit_code == 0, retried.output
        first_msg = json.loads(retried.stdout)["redrive_msg_id"]
        await wait_until(lambda: pool.fetchval("SELECT n FROM effects WHERE event_id = $1", event.event_id),
                         what="the retried event to be processed")  # fmt: skip

        # Retried again although it had been processed: a new message, no second effect.
        again = await vl(settings, "dlq", "retry", str(dead_id), "--json")
        assert again.exit_code == 0 and json.loads(again.stdout)["redrive_msg_id"] != first_msg
        await wait_until(lambda: _consumer_idle(rt, "counted"), what="the second retry to be consumed")
        assert await pool.fetchval("SELECT n FROM effects WHERE event_id = $1", event.event_id) == 1

        dropped = await vl(settings, "dlq", "drop", str(dead_id))
        assert dropped.exit_code == 0
        assert json.loads((await vl(settings, "dlq", "list", "--json")).stdout) == []
        assert len(json.loads((await vl(settings, "dlq", "list", "--all", "--json")).stdout)) == 1
        refused = await vl(settings, "dlq", "retry", str(dead_id))
        assert refused.exit_code == 1 and "dropped" in refused.output
        missing = await vl(settings, "dlq", "show", "999999")
        assert missing.exit_code == 1 and "no dead letter" in missing.output


async def _consumer_idle(rt, name):
    info = await rt.ports.js.consumer_info("EVENTS", name)
    return info.num_ack_pending == 0 and info.num_pending == 0 and info.delivered.stream_seq >= 3
