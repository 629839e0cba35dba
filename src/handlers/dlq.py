"""dlq: turns JetStream advisories (max deliveries reached, message terminated) into
dead_letters rows holding the original event, so nothing a handler gave up on is lost."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

NAME = "dlq"

MAX_DELIVERIES = "io.nats.jetstream.advisory.v1.max_deliver"
TERMINATED = "io.nats.jetstream.advisory.v1.terminated"


@dataclass(frozen=True)
class OriginalMessage:
    subject: str
    headers: dict[str, str]
    data: bytes


class StreamReader(Protocol):
    async def get(self, stream: str, seq: int) -> OriginalMessage | None:
        """The stored message, or None when it is gone (stream limits)."""


class DeadLetterStore(Protocol):
    async def record(
        self,
        *,
        consumer: str,
        stream: str,
        stream_seq: int,
        reason: str,
        original: OriginalMessage | None,
        deliveries: int | None,
    ) -> bool:
        """Insert once per (consumer, stream_seq); the last error comes from delivery_failures."""


async def handle(advisory_body: bytes, *, reader: StreamReader, store: DeadLetterStore) -> bool:
    adv: dict[str, Any] = json.loads(advisory_body)
    kind = adv.get("type")
    if kind == MAX_DELIVERIES:
        reason = "max_deliveries"
    elif kind == TERMINATED:
        reason = "terminated"
    else:
        return False  # some other advisory; nothing to record
    stream, seq = adv["stream"], int(adv["stream_seq"])
    original = await reader.get(stream, seq)
    return await store.record(
        consumer=adv["consumer"],
        stream=stream,
        stream_seq=seq,
        reason=reason,
        original=original,
        deliveries=adv.get("deliveries"),
    )
