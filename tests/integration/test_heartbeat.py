"""in_progress heartbeats on a real nats-server: long work on a consumer with a short ack_wait
keeps its message (one delivery), where the same work without heartbeats is redelivered."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.waiting import wait_until
from vaultline.adapters.bus.broker import Delivery, event_handler
from vaultline.adapters.bus.topology import ConsumerSpec
from vaultline.bootstrap import Ports, Runtime
from vaultline.events import Envelope, new_event
from vaultline.handlers.heartbeat import keep_alive

pytestmark = pytest.mark.integration

ACK_WAIT_S = 1.5
WORK_S = 4.0  # well past ack_wait


def long_work(deliveries: list[int], done: list[int], *, beat: bool):
    def factory(p: Ports):
        async def run(event: Envelope, d: Delivery) -> None:
            deliveries.append(d.deliveries)
            async with keep_alive(d.in_progress if beat else None, every=ACK_WAIT_S / 3):
                await asyncio.sleep(WORK_S)  # the scenario: a long await (a crop thread, an Ollama call)
            done.append(d.deliveries)

        return event_handler(run)

    return factory


@pytest.mark.parametrize("beat", [True, False], ids=["heartbeats", "silent"])
async def test_heartbeats_keep_long_work_from_being_redelivered(settings, beat):
    deliveries: list[int] = []
    done: list[int] = []
    spec = ConsumerSpec(f"long_{int(beat)}", ("image.approved.>",), ack_wait_s=ACK_WAIT_S)
    rt = Runtime(settings, [spec.name], concurrency=2, custom={spec.name: (spec, long_work(deliveries, done, beat=beat))})
    async with rt:
        await rt.publisher.publish(new_event("image.approved", creator="elena", key=uuid.uuid4(), payload={"vault": "feed"}))
        await wait_until(lambda: done, timeout=30, what="the work to finish")
    if beat:
        assert deliveries == [1]  # never handed to another worker while it ran
    else:
        assert len(deliveries) >= 2  # without heartbeats the short ack_wait redelivers it
