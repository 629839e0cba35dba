"""Receiving one Fanvue webhook: verify, parse, route to a creator, record durably.

The answer tells Fanvue whether to retry. It is given only after the facts are committed to the
outbox (the relay publishes them), so a 2xx never loses an event; a redelivery finds its event
ids already there and records nothing new. The real work happens in the consumers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import structlog

from vaultline.domain.errors import Invalid
from vaultline.domain.webhooks import BadSignature, parse_webhook, verify_signature
from vaultline.events import Envelope

log = structlog.get_logger("vaultline.webhooks")

__all__ = ["BadSignature", "WebhookOutcome", "WebhookStore", "receive_webhook"]


class WebhookStore(Protocol):
    async def creator_for(self, user_uuid: str) -> str | None: ...

    async def record(self, events: Sequence[Envelope]) -> int: ...

    async def keep_unrouted(self, event: str, recipient_uuid: str | None, reason: str, body: bytes) -> None: ...


@dataclass(frozen=True)
class WebhookOutcome:
    status: Literal["recorded", "unknown_recipient", "unreadable"]
    creator: str | None = None
    events: tuple[str, ...] = ()  # event ids
    new: int = 0  # how many were not recorded before (0 on a redelivery)
    reason: str | None = None


async def receive_webhook(event: str, body: bytes, signature: str | None, *, secret: str | None,
                          now: datetime, store: WebhookStore) -> WebhookOutcome:
    """Raises BadSignature (answer 401, nothing recorded). A verified body we cannot read is
    kept for inspection and reported as `unreadable`; an unknown recipient is kept and
    reported as `unknown_recipient`; nothing is published for either."""
    verify_signature(secret or "", body, signature, now=now.timestamp())
    try:
        parsed = parse_webhook(event, body, received_at=now)
    except Invalid as e:
        await store.keep_unrouted(event, None, f"unreadable: {e.message}", body)
        log.warning("fanvue webhook kept: unreadable", webhook=event, reason=e.message)
        return WebhookOutcome("unreadable", reason=e.message)
    creator = await store.creator_for(parsed.recipient_uuid) if parsed.recipient_uuid else None
    if creator is None:
        reason = f"unknown recipient {parsed.recipient_uuid!r}: no creator logged in with this Fanvue account"
        await store.keep_unrouted(event, parsed.recipient_uuid, reason, body)
        log.warning("fanvue webhook kept: unknown recipient", webhook=event, recipient=parsed.recipient_uuid)
        return WebhookOutcome("unknown_recipient", reason=reason)
    events = [f.event(creator) for f in parsed.facts]
    new = await store.record(events)
    log.info("fanvue webhook recorded", webhook=event, creator=creator, events=len(events), new=new)
    return WebhookOutcome("recorded", creator, tuple(str(e.event_id) for e in events), new)
