"""analytics: daily aggregates per creator from the events alone.

Reads image.*, media.*, message.*, reply.*, sale.*, fan.* and keeps counters per (creator,
UTC day): the image funnel, PPV offers and purchases by category and price band, revenue by
kind / vault / category, replies and time to reply, top content and top fans.

It keeps its own small projections (category and vault of each approved content, the
messages each content went out in) instead of reading other handlers' tables, so it scales
and rebuilds by replay on its own. A sale is attributed to content by its content_id, else
by the message it bought (message_uuid, else route_uuid) matched against media.sent; a sale
whose message has not been seen yet waits and is attributed when the media.sent arrives.

Idempotent: the processed_events row is inserted in the same transaction as the counters.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from vaultline.domain import analytics as a
from vaultline.domain.retry import PermanentError
from vaultline.events import (
    Envelope,
    FanFollowed,
    FanSubscribed,
    ImageApproved,
    ImageCropped,
    MediaSent,
    MediaUploaded,
    MessageReceived,
    MessageSent,
    ReplySuggested,
    SaleRecorded,
)
from vaultline.handlers.ports import Tracking

NAME = "analytics"

Counts = dict[tuple[str, str], int]


@dataclass(frozen=True)
class ContentFacts:
    vault: str | None
    category: str | None


@dataclass(frozen=True)
class MessageFacts:
    primary_content: uuid.UUID
    category: str
    vault: str
    price_cents: int
    band: str | None


@dataclass(frozen=True)
class WaitingSale:
    dedupe_key: str
    kind: str
    gross_cents: int
    day: date
    fan_id: str | None


class AnalyticsTx(Tracking, Protocol):
    async def bump(self, creator: str, day: date, counts: Counts) -> None:
        """Add to analytics_daily counters (metric, dim) -> delta."""

    async def content(self, creator: str, content_id: uuid.UUID) -> ContentFacts | None: ...

    async def remember_content(self, creator: str, content_id: uuid.UUID, *, vault: str | None,
                               category: str | None, price_cents: int | None, overwrite: bool) -> None:  # fmt: skip
        """overwrite=False only fills a vault not known yet (media.uploaded)."""

    async def first_milestone(self, creator: str, content_id: uuid.UUID, milestone: str, day: date) -> bool:
        """Set first_sent_on / first_purchased_on once; True when this call set it."""

    async def add_send(self, creator: str, message_uuid: str, content_id: uuid.UUID, fan_id: str, day: date) -> bool:
        """False when this content in this message was already counted."""

    async def add_message(self, creator: str, message_uuid: str, facts: MessageFacts, fan_id: str, day: date) -> bool:
        """False when the message is already known."""

    async def message(self, creator: str, message_uuid: str) -> MessageFacts | None: ...

    async def add_sale(self, creator: str, sale: SaleRecorded, event_id: uuid.UUID, day: date, *,
                       message_uuid: str | None) -> bool:  # fmt: skip
        """False when a sale with this dedupe_key was already counted."""

    async def mark_attributed(self, creator: str, dedupe_key: str) -> None: ...

    async def waiting_sales(self, creator: str, message_uuid: str) -> list[WaitingSale]: ...

    async def bump_content(self, creator: str, day: date, content_id: uuid.UUID, *, sends: int = 0,
                           purchases: int = 0, revenue_cents: int = 0) -> None: ...  # fmt: skip

    async def bump_fan(self, creator: str, day: date, fan_id: str, *, sales: int = 0, purchases: int = 0,
                       revenue_cents: int = 0) -> None: ...  # fmt: skip

    async def remember_fan(self, creator: str, fan_id: str, handle: str | None, display_name: str | None) -> None: ...

    async def reply_waiting(self, creator: str, fan_id: str, received_at: datetime) -> None:
        """Remember the oldest unanswered message of a fan."""

    async def take_reply_waiting(self, creator: str, fan_id: str) -> datetime | None:
        """The oldest unanswered message time, and forget it (a reply answers them all)."""

    async def add_reply_time(self, creator: str, event_id: uuid.UUID, day: date, seconds: float) -> None: ...


class AnalyticsStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[AnalyticsTx]: ...


async def handle(event: Envelope, *, store: AnalyticsStore, stream_seq: int | None = None) -> bool:
    """Returns False when the event counted nothing new: already processed (a redelivery or a
    replay), or the same send or sale reported again under another event id."""
    async with store.transaction() as tx:
        if not await tx.first_time(NAME, event.event_id, stream_seq):
            return False
        apply = _APPLY.get(event.type)
        counted = await apply(event, tx) if apply is not None else None
    return counted is not False


# --------------------------------------------------------------------------- per event type


def _one(metric: str, dim: str = "") -> Counts:
    return {(metric, dim): 1}


def _content_id(e: Envelope) -> uuid.UUID:
    try:
        return uuid.UUID(e.key)
    except ValueError as err:
        raise PermanentError(f"{e.type} key {e.key!r} is not a content id") from err


async def _generated(e: Envelope, tx: AnalyticsTx) -> None:
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.GENERATED))


async def _cropped(e: Envelope, tx: AnalyticsTx) -> None:
    p: ImageCropped = e.payload
    if p.mode_used == "fallback" or p.fallback_reason:
        await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.CROP_FALLBACK))


async def _crop_failed(e: Envelope, tx: AnalyticsTx) -> None:
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.CROP_FAILED))


async def _approved(e: Envelope, tx: AnalyticsTx) -> None:
    p: ImageApproved = e.payload
    await tx.remember_content(e.creator, _content_id(e), vault=p.vault, category=p.category,
                              price_cents=p.price_cents, overwrite=True)  # fmt: skip
    await tx.bump(e.creator, a.day_of(e.occurred_at), {(a.APPROVED, ""): 1, (a.APPROVED, a.dim("vault", p.vault)): 1})


async def _rejected(e: Envelope, tx: AnalyticsTx) -> None:
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.REJECTED))


async def _uploaded(e: Envelope, tx: AnalyticsTx) -> None:
    p: MediaUploaded = e.payload
    await tx.remember_content(e.creator, _content_id(e), vault=p.vault, category=None, price_cents=None, overwrite=False)
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.UPLOADED))


async def _upload_failed(e: Envelope, tx: AnalyticsTx) -> None:
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.UPLOAD_FAILED))


async def _sent(e: Envelope, tx: AnalyticsTx) -> bool | None:
    p: MediaSent = e.payload
    day = a.day_of(e.occurred_at)
    if not await tx.add_send(e.creator, p.message_uuid, p.content_id, p.fan_id, day):
        return False  # the same send reported twice under another event id
    counts: Counts = {(a.SENDS, ""): 1}
    await tx.bump_content(e.creator, day, p.content_id, sends=1)
    if await tx.first_milestone(e.creator, p.content_id, "sent", day):
        counts[(a.FUNNEL_SENT, "")] = 1
    primary = p.bundle[0] if p.bundle else p.content_id
    info = await tx.content(e.creator, primary)
    price = p.price_cents or 0
    facts = MessageFacts(
        primary_content=primary,
        category=(info.category if info else None) or a.UNKNOWN,
        vault=(info.vault if info else None) or a.UNKNOWN,
        price_cents=price,
        band=a.price_band(price) if price > 0 else None,
    )
    if await tx.add_message(e.creator, p.message_uuid, facts, p.fan_id, day):
        if facts.band is not None:
            counts[(a.OFFERS, "")] = 1
            counts[(a.OFFERS, a.dim("category", facts.category))] = 1
            counts[(a.OFFERS, a.dim("band", facts.band))] = 1
        await tx.bump(e.creator, day, counts)
        # Sales that named this message before we saw it.
        for sale in await tx.waiting_sales(e.creator, p.message_uuid):
            # The fan's spend was counted when the sale arrived.
            await _attribute(tx, e.creator, sale, facts, count_fan=False)
            await tx.mark_attributed(e.creator, sale.dedupe_key)
    else:
        await tx.bump(e.creator, day, counts)


async def _sale(e: Envelope, tx: AnalyticsTx) -> bool | None:
    p: SaleRecorded = e.payload
    day = a.day_of(p.sold_at)
    message_uuid = p.message_uuid or p.route_uuid
    if not await tx.add_sale(e.creator, p, e.event_id, day, message_uuid=message_uuid):
        return False  # the same sale from another source (webhook and sync)
    await tx.bump(e.creator, day, {(a.SALES, p.kind): 1, (a.REVENUE_KIND, p.kind): p.gross_cents})
    if p.fan_id:
        await tx.remember_fan(e.creator, p.fan_id, p.fan.handle, p.fan.display_name)
    sale = WaitingSale(dedupe_key=p.dedupe_key, kind=p.kind, gross_cents=p.gross_cents, day=day, fan_id=p.fan_id)
    facts = await tx.message(e.creator, message_uuid) if message_uuid else None
    if facts is None and p.content_id is not None:
        info = await tx.content(e.creator, p.content_id)
        facts = MessageFacts(
            primary_content=p.content_id,
            category=(info.category if info else None) or a.UNKNOWN,
            vault=(info.vault if info else None) or a.UNKNOWN,
            price_cents=0,
            band=None,  # not an offer: counts for the content, not for conversion
        )
    if facts is not None:
        await _attribute(tx, e.creator, sale, facts)
        await tx.mark_attributed(e.creator, p.dedupe_key)
    elif p.fan_id:  # not attributable (yet): the fan's spend counts now
        await tx.bump_fan(e.creator, day, p.fan_id, sales=1, purchases=int(p.kind == "purchase"),
                          revenue_cents=p.gross_cents)  # fmt: skip


async def _attribute(
    tx: AnalyticsTx, creator: str, sale: WaitingSale, m: MessageFacts, *, count_fan: bool = True
) -> None:
    """Count a sale against the content (and offer) it paid for, on the day of the sale."""
    purchase = sale.kind == "purchase"
    counts: Counts = {
        (a.REVENUE_VAULT, m.vault): sale.gross_cents,
        (a.REVENUE_CATEGORY, m.category): sale.gross_cents,
    }
    if purchase and m.band is not None:  # a purchase of a PPV offer: conversion
        counts[(a.PURCHASES, "")] = 1
        counts[(a.PURCHASES, a.dim("category", m.category))] = 1
        counts[(a.PURCHASES, a.dim("band", m.band))] = 1
    if purchase:
        if await tx.first_milestone(creator, m.primary_content, "purchased", sale.day):
            counts[(a.FUNNEL_PURCHASED, "")] = 1
    await tx.bump(creator, sale.day, counts)
    await tx.bump_content(creator, sale.day, m.primary_content, purchases=int(purchase), revenue_cents=sale.gross_cents)
    if sale.fan_id and count_fan:
        await tx.bump_fan(creator, sale.day, sale.fan_id, sales=1, purchases=int(purchase), revenue_cents=sale.gross_cents)


async def _received(e: Envelope, tx: AnalyticsTx) -> None:
    p: MessageReceived = e.payload
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.MESSAGES_RECEIVED))
    await tx.remember_fan(e.creator, p.fan_id, p.fan.handle, p.fan.display_name)
    await tx.reply_waiting(e.creator, p.fan_id, p.sent_at or e.occurred_at)


async def _suggested(e: Envelope, tx: AnalyticsTx) -> None:
    p: ReplySuggested = e.payload
    counts = _one(a.REPLIES_SUGGESTED)
    if p.status == "flagged":
        counts[(a.REPLIES_FLAGGED, "")] = 1
    await tx.bump(e.creator, a.day_of(e.occurred_at), counts)


async def _replied(e: Envelope, tx: AnalyticsTx) -> None:
    p: MessageSent = e.payload
    day = a.day_of(e.occurred_at)
    await tx.bump(e.creator, day, _one(a.REPLIES_SENT))
    waiting_since = await tx.take_reply_waiting(e.creator, p.fan_id)
    if waiting_since is not None:
        seconds = max(0.0, (e.occurred_at - waiting_since).total_seconds())
        await tx.add_reply_time(e.creator, e.event_id, day, seconds)


async def _followed(e: Envelope, tx: AnalyticsTx) -> None:
    p: FanFollowed = e.payload
    await tx.remember_fan(e.creator, p.fan_id, p.fan.handle, p.fan.display_name)
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.FANS_FOLLOWED))


async def _subscribed(e: Envelope, tx: AnalyticsTx) -> None:
    p: FanSubscribed = e.payload
    await tx.remember_fan(e.creator, p.fan_id, p.fan.handle, p.fan.display_name)
    await tx.bump(e.creator, a.day_of(e.occurred_at), _one(a.FANS_SUBSCRIBED))


_APPLY = {
    "image.generated": _generated,
    "image.cropped": _cropped,
    "image.crop_failed": _crop_failed,
    "image.approved": _approved,
    "image.rejected": _rejected,
    "media.uploaded": _uploaded,
    "media.upload_failed": _upload_failed,
    "media.sent": _sent,
    "sale.recorded": _sale,
    "message.received": _received,
    "reply.suggested": _suggested,
    "message.sent": _replied,
    "fan.followed": _followed,
    "fan.subscribed": _subscribed,
}
