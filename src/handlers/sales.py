"""sales: sale.recorded, media.sent, message.received, fan.followed, fan.subscribed -> the
`sales`, `sends`, `fans` projections and the content counters.

- A sale is counted once whichever sources report it (webhook, message poll, earnings import):
  by its dedupe key, then by platform ids (routeUuid / message uuid / post uuid, and the
  message a sale was already matched to), then by fan + amount within a time window from a
  source that has not reported it yet. A duplicate only adds its source (and any ids it
  carries) to the sale already counted.
- A purchase is matched to the send it paid for (domain.sends.match_purchase); the send gets
  `purchased_at`, its content `times_purchased` / `revenue_cents`, the fan `lifetime_spend`,
  all in one transaction with this handler's processed_events row.
- media.sent rebuilds `sends` rows on a replay into a fresh database (live, the send use case
  already wrote them and this changes nothing).
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from vaultline.domain import sends as rules
from vaultline.events import (
    NAMESPACE,
    Envelope,
    FanFollowed,
    FanRef,
    FanSubscribed,
    MediaSent,
    MessageReceived,
    SaleRecorded,
)

NAME = "sales"
log = structlog.get_logger("vaultline.sales")


def sale_id_for(creator: str, dedupe_key: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"sale:{creator}:{dedupe_key}")


@dataclass(frozen=True)
class FanFacts:
    creator: str
    platform: str
    fan_id: str
    ref: FanRef
    seen_at: datetime
    message_at: datetime | None = None
    followed_at: datetime | None = None
    subscribed_at: datetime | None = None


class SalesTx(Protocol):
    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool: ...

    async def lock(self, key: str) -> None: ...

    async def fan_seen(self, facts: FanFacts) -> None: ...

    async def record_send(self, event: Envelope, payload: MediaSent) -> None: ...

    async def sale_for_key(self, creator: str, dedupe_key: str) -> uuid.UUID | None: ...

    async def candidate_sales(self, creator: str, platform: str, report: rules.SaleReport) -> list[rules.KnownSale]: ...

    async def sends_by_message(self, creator: str, platform: str, ids: set[str]) -> list[rules.SendForSale]: ...

    async def fan_sends(self, creator: str, platform: str, fan_id: str) -> list[rules.SendForSale]: ...

    async def insert_sale(self, sale_id: uuid.UUID, event: Envelope, payload: SaleRecorded) -> None: ...

    async def merge_into(self, sale_id: uuid.UUID, creator: str, payload: SaleRecorded) -> None: ...

    async def apply_purchase(
        self, sale_id: uuid.UUID, sends: list[rules.SendForSale], gross_cents: int, sold_at: datetime
    ) -> None:
        """Sends purchased, content counters moved (missing content raises TransientError), sale matched."""

    async def add_fan_spend(
        self, creator: str, platform: str, fan_id: str, gross_cents: int, sold_at: datetime, purchase: bool
    ) -> None: ...


class SalesStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[SalesTx]: ...


async def handle(event: Envelope, *, store: SalesStore, stream_seq: int | None = None) -> bool:
    """Returns False for an event this handler already processed."""
    p = event.payload
    if not isinstance(p, (SaleRecorded, MediaSent, MessageReceived, FanFollowed, FanSubscribed)):
        return False
    async with store.transaction() as tx:
        if not await tx.first_time(NAME, event.event_id, stream_seq):
            return False
        at = event.occurred_at
        if isinstance(p, MediaSent):
            await tx.record_send(event, p)
        elif isinstance(p, MessageReceived):
            when = p.sent_at or at
            await tx.fan_seen(FanFacts(event.creator, p.platform, p.fan_id, p.fan, when, message_at=when))
        elif isinstance(p, FanFollowed):
            await tx.fan_seen(FanFacts(event.creator, p.platform, p.fan_id, p.fan, at, followed_at=at))
        elif isinstance(p, FanSubscribed):
            await tx.fan_seen(FanFacts(event.creator, p.platform, p.fan_id, p.fan, at, subscribed_at=at))
        else:
            await _sale(tx, event, p)
    return True


async def _sale(tx: SalesTx, event: Envelope, p: SaleRecorded) -> None:
    creator = event.creator
    # One creator's sales are deduplicated one at a time (several workers on this durable).
    await tx.lock(f"sales:{creator}")
    if p.fan_id:
        await tx.fan_seen(FanFacts(creator, p.platform, p.fan_id, p.fan, p.sold_at))
    if await tx.sale_for_key(creator, p.dedupe_key) is not None:
        log.info("sale already recorded under this key", dedupe_key=p.dedupe_key)
        return
    report = rules.SaleReport(
        kind=p.kind, gross_cents=p.gross_cents, fan_id=p.fan_id, sold_at=p.sold_at, source=p.source,
        route_uuid=p.route_uuid, message_uuid=p.message_uuid, post_uuid=p.post_uuid,
    )  # fmt: skip
    duplicate = rules.find_duplicate(report, await tx.candidate_sales(creator, p.platform, report))
    by_ids = await tx.sends_by_message(creator, p.platform, report.ids) if report.ids else []
    if duplicate is not None:
        await tx.merge_into(duplicate.sale_id, creator, p)
        if duplicate.matched_message_uuid is None and by_ids:
            # The first report could not say which send it paid for; this one can.
            matched = rules.match_purchase(report, by_ids, [])
            if matched:
                await tx.apply_purchase(duplicate.sale_id, matched, duplicate.gross_cents, duplicate.occurred_at)
        if duplicate.fan_id is None and p.fan_id:  # only now do we know whose money it was
            await tx.add_fan_spend(creator, p.platform, p.fan_id, duplicate.gross_cents, duplicate.occurred_at,
                                   duplicate.kind == "purchase")  # fmt: skip
        log.info("sale reported again", sale=str(duplicate.sale_id), source=p.source)
        return
    sale_id = sale_id_for(creator, p.dedupe_key)
    await tx.insert_sale(sale_id, event, p)
    if p.kind == "purchase":
        fan_sends = [] if by_ids or not p.fan_id else await tx.fan_sends(creator, p.platform, p.fan_id)
        matched = rules.match_purchase(report, by_ids, fan_sends)
        if matched:
            await tx.apply_purchase(sale_id, matched, p.gross_cents, p.sold_at)
        else:
            log.warning("purchase matches no send", dedupe_key=p.dedupe_key, fan=p.fan_id, gross=p.gross_cents)
    if p.fan_id:
        await tx.add_fan_spend(creator, p.platform, p.fan_id, p.gross_cents, p.sold_at, p.kind == "purchase")
