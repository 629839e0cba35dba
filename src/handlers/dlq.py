"""dlq: turns JetStream advisories (max deliveries reached, message terminated) into
dead_letters rows holding the original event, so nothing a handler gave up on is lost.

The operator's side (`vaultline dlq retry|drop`): a retry republishes the original bytes under
a new Nats-Msg-Id (the stream would drop the old one as a duplicate) and the same event id
in the body, so every handler's processed_events makes an event that had in fact been
processed a no-op; a drop hides the row and keeps it for the audit trail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vaultline.domain.errors import Conflict, NotFound

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


class DeadLetterAdmin(Protocol):
    async def get(self, dead_letter_id: int) -> dict[str, Any] | None: ...

    async def mark_redriven(self, dead_letter_id: int, msg_id: uuid.UUID) -> None: ...

    async def drop(self, dead_letter_id: int) -> bool: ...


MSG_ID = "Nats-Msg-Id"
REDRIVE_OF = "Vl-Redrive-Of"  # header on a republished message: the dead letter it came from
# (subject, body, headers) -> published and stored by the stream
Republish = Callable[[str, bytes, dict[str, str]], Awaitable[Any]]


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


async def retry(store: DeadLetterAdmin, republish: Republish, dead_letter_id: int) -> dict[str, Any]:
    """Republish a dead letter's original message with a new message id; returns the row."""
    row = await store.get(dead_letter_id)
    if row is None:
        raise NotFound(f"no dead letter with id {dead_letter_id}")
    if row["dropped_at"] is not None:
        raise Conflict(f"dead letter {dead_letter_id} was dropped")
    if row["payload"] is None or not row["subject"]:
        raise Conflict(f"dead letter {dead_letter_id} has no stored message to republish (gone from the stream)")
    msg_id = uuid.uuid4()
    headers = {k: str(v) for k, v in (row["headers"] or {}).items()}
    headers |= {MSG_ID: str(msg_id), REDRIVE_OF: str(dead_letter_id)}
    await republish(row["subject"], bytes(row["payload"]), headers)
    await store.mark_redriven(dead_letter_id, msg_id)
    return (await store.get(dead_letter_id)) or row


async def drop(store: DeadLetterAdmin, dead_letter_id: int) -> None:
    if not await store.drop(dead_letter_id):
        if await store.get(dead_letter_id) is None:
            raise NotFound(f"no dead letter with id {dead_letter_id}")
        raise Conflict(f"dead letter {dead_letter_id} was already dropped")
