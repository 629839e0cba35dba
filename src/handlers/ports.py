"""The small interfaces handlers are written against. Adapters implement them; bootstrap
wires real ones, unit tests pass fakes (tests/fakes.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from vaultline.domain.chat import (
    ChatLine,
    ConversationSummary,
    FanProfile,
    ModelAnswer,
    OfferCandidate,
    OutgoingMessage,
    Suggestion,
)
from vaultline.events import Envelope, PpvOffer


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


# --------------------------------------------------------------------------- fan chat
# The chat handler gets ChatStore, Drafter, OfferSource and FanProfiles: none of them can send.
# Only the inbox's approval action (handlers/inbox.py) gets a ChatSender.


class Drafter(Protocol):
    async def draft(self, model: str, messages: list[dict[str, str]]) -> ModelAnswer:
        """Raises ModelUnavailable (transient) or ModelAnswerInvalid (malformed twice)."""


class OfferSource(Protocol):
    """adapters.db.chat.SalesOfferSource: issue 9's `suggest-ppv` ranking."""

    async def eligible(self, creator: str, fan_id: str, *, limit: int = 5) -> list[OfferCandidate]:
        """Uploaded PPV content the fan has not received nor a near-copy of, best first."""


class FanProfiles(Protocol):
    """adapters.db.chat.SalesFanProfiles: spend and purchases from issue 9's fans/sends tables."""

    async def profile(self, creator: str, fan_id: str) -> FanProfile: ...

    async def spend(self, creator: str, fan_ids: list[str]) -> dict[str, int]:
        """Total spend in cents per fan (fans with nothing spent may be missing)."""


@dataclass(frozen=True)
class SentChat:
    platform: str
    message_uuid: str
    media_uuids: tuple[str, ...] = ()


class ChatSender(Protocol):
    """adapters.chat_sender.GuardedChatSender: an offer goes through issue 9's send use case
    (reserve in `sends`, platform send_message, media.sent)."""

    async def send(
        self, creator: str, fan_id: str, text: str, *, offer: PpvOffer | None, sent_by: str
    ) -> SentChat:
        """Send a text (+ the offer through the send guard) to a fan; the platform's message
        uuid. Raises Conflict when the guard refuses (nothing sent)."""


class ChatProjection(Protocol):
    """messages and suggestions as a projection of the chat events (adapters/db/chat.py), for
    `vaultline replay`: each method applies one recorded event (never the model, never a
    platform) and returns False when it changed nothing (already applied)."""

    async def received(self, event: Envelope) -> bool: ...

    async def suggested(self, event: Envelope) -> bool: ...

    async def sent(self, event: Envelope) -> bool: ...

    async def discarded(self, event: Envelope) -> bool: ...


class ChatStore(Protocol):
    """Messages and suggestions (adapters/db/chat.py). Methods that change state are one
    transaction each; `finish` includes the handler's processed_events row."""

    async def receive(self, event: Envelope) -> Suggestion:
        """Store a message.received and its pending suggestion (idempotent); the current one."""

    async def history(self, creator: str, fan_id: str, *, limit: int, up_to: int | None = None) -> list[ChatLine]:
        """The last `limit` messages (oldest first), up to message id `up_to`."""

    async def mark_pending(self, suggestion_id: int, reason: str, *, event: Envelope | None = None) -> int:
        """Count one failed model attempt; returns the attempts so far."""

    async def finish(self, suggestion: Suggestion, *, handler: str, event: Envelope) -> bool:
        """processed_events + the suggestion's final state + `event` in the outbox, one
        transaction; False when already finished."""

    async def conversations(self, creator: str | None = None) -> list[ConversationSummary]: ...

    async def creators_of(self, fan_id: str) -> list[str]: ...

    async def latest_suggestion(self, creator: str, fan_id: str) -> Suggestion | None: ...

    async def waiting_since(self, creator: str, fan_id: str) -> Any: ...

    async def reply_times(self, creator: str, fan_id: str) -> list[int]: ...

    async def claim(self, suggestion_id: int) -> str | None:
        """open -> sending; the previous status, or None when it is not open any more."""

    async def release(self, suggestion_id: int, previous_status: str) -> None: ...

    async def record_sent(
        self, suggestion_id: int, message: OutgoingMessage, *, draft: int | None, edited: bool,
        reply_seconds: int | None, event: Envelope,
    ) -> None: ...  # fmt: skip

    async def discard(self, suggestion_id: int, *, by: str, event: Envelope) -> bool: ...

    async def sent_content(self, creator: str, fan_id: str) -> set[uuid.UUID]: ...
