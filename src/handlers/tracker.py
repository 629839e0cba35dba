"""tracker: projects image.* and media.* events into the `content` table.

Idempotent: the processed_events row is inserted in the same transaction as the projection,
so a redelivery (crash between commit and ack, replay) changes nothing."""

from __future__ import annotations

import uuid

from vaultline.domain.content import project
from vaultline.domain.retry import PermanentError
from vaultline.events import Envelope
from vaultline.handlers.ports import UnitOfWorkFactory

NAME = "tracker"


async def handle(event: Envelope, *, uow: UnitOfWorkFactory, stream_seq: int | None = None) -> bool:
    """Returns False when the event was already processed (a duplicate delivery)."""
    try:
        content_id = uuid.UUID(event.key)
    except ValueError as e:
        raise PermanentError(f"{event.type} key {event.key!r} is not a content id") from e
    async with uow() as tx:
        if not await tx.first_time(NAME, event.event_id, stream_seq):
            return False
        row = await tx.content.get(content_id, for_update=True)
        new = project(row, event)
        if new is not None:
            await tx.content.upsert(new)
    return True
