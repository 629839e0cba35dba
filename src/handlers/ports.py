"""The small interfaces handlers are written against. Adapters implement them; bootstrap
wires real ones, unit tests pass fakes (tests/fakes.py)."""

from __future__ import annotations

import uuid
from typing import Any, Protocol, runtime_checkable

from vaultline.events import Envelope


class Publisher(Protocol):
    async def publish(self, event: Envelope) -> None:
        """Publish through JetStream with Nats-Msg-Id = event_id; raises unless the PubAck arrived."""


@runtime_checkable
class Storage(Protocol):
    """Object storage addressed by keys like `elena/1_raw/<content_id>.png`.

    The local adapter maps keys onto folders under a root; the S3 adapter onto a bucket.
    Writes to the same key overwrite (deterministic keys make redeliveries idempotent)."""

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    async def get(self, key: str) -> bytes:
        """Raises KeyError when the key does not exist."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Deleting a missing key is not an error."""

    async def move(self, src: str, dst: str) -> None:
        """Raises KeyError when src does not exist; dst is overwritten."""

    async def list(self, prefix: str = "") -> list[str]:
        """Keys under prefix, sorted."""


class Tracking(Protocol):
    """One Postgres transaction for a handler's effect plus its processed_events row."""

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        """Insert the processed_events row; False when this handler already processed the event."""

    async def add_outbox(self, event: Envelope) -> None:
        """Queue an event for the relay, committed with everything else in this transaction."""


class ContentRepository(Protocol):
    async def get(self, content_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
        """for_update: serialise with other writers of this content until the transaction ends."""

    async def upsert(self, row: dict[str, Any]) -> None: ...


class UnitOfWork(Tracking, Protocol):
    content: ContentRepository

    async def __aenter__(self) -> "UnitOfWork": ...

    async def __aexit__(self, *exc: object) -> None:
        """Commits when the block exits cleanly, rolls back on an exception."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
