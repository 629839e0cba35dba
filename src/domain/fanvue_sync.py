"""What the sync loop reads from Fanvue, as facts (the polling twin of domain/webhooks.py). No I/O.

- A fan's message in `GET /chats/{fan}/messages` -> message.received with the same dedupe key
  (so the same event id) as its message-received webhook.
- One of our PPV messages showing `purchasedAt` -> sale.recorded, an exact purchase keyed by the
  message uuid (the same key as a purchase webhook whose routeUuid is that message).
- A row of `GET /insights/earnings` -> sale.recorded keyed by source, fan, amount and date
  (earnings rows carry no ids; the sales handler matches them to the other sources by fan,
  amount and a time window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vaultline.domain.errors import Invalid
from vaultline.domain.webhooks import (
    PLATFORM,
    Fact,
    cents,
    fan_id,
    fan_ref,
    message_key,
    parse_time,
    purchase_key,
)
from vaultline.events import FanRef, MessageReceived, SaleRecorded, SaleKind

@dataclass(frozen=True)
class OpenPpv:
    """A PPV message we sent that the fan had not bought when the sync loop last looked."""

    message_uuid: str
    fan_uuid: str
    price_cents: int
    sent_at: datetime


# Earnings `source` -> our sale kind.
EARNINGS_KINDS: dict[str, SaleKind] = {
    "message": "purchase", "post": "purchase", "mediaLink": "purchase",
    "tip": "tip", "subscription": "subscription", "renewal": "renewal",
}


def sender_of(message: dict[str, Any]) -> str | None:
    sender = message.get("sender")
    uuid = sender.get("uuid") if isinstance(sender, dict) else message.get("senderUuid")
    return str(uuid) if uuid else None


def sent_at(message: dict[str, Any]) -> datetime | None:
    return parse_time(message.get("sentAt") or message.get("createdAt"))


def ppv_price(message: dict[str, Any]) -> int | None:
    """pricing.USD.price (cents) of a PPV message; None for a free one."""
    pricing = message.get("pricing")
    if isinstance(pricing, dict):
        usd = pricing.get("USD") or pricing.get("usd")
        price = usd.get("price") if isinstance(usd, dict) else None
        if isinstance(price, (int, float)) and not isinstance(price, bool) and price > 0:
            return int(price)
    price = message.get("price")
    if isinstance(price, (int, float)) and not isinstance(price, bool) and price > 0:
        return int(price)
    return None


def fan_message_fact(message: dict[str, Any], fan: str, ref: FanRef = FanRef()) -> Fact:
    """A message the fan sent us."""
    uuid = message.get("uuid")
    if not uuid:
        raise Invalid("chat message without uuid")
    media = message.get("mediaUuids") or []
    payload = MessageReceived(
        platform=PLATFORM, fan_id=fan_id(fan), message_uuid=str(uuid),
        text=str(message.get("text") or "")[:20000], sent_at=sent_at(message), fan=ref,
        media_uuids=[str(m) for m in media if m] if isinstance(media, list) else [],
        price_cents=ppv_price(message), source="sync",
    )
    return Fact("message.received", payload.fan_id, payload, message_key(str(uuid)), payload.sent_at)


def purchase_fact(message: dict[str, Any], fan: str, ref: FanRef = FanRef()) -> Fact | None:
    """Our PPV message the fan bought (purchasedAt set); None if not bought or not priced."""
    bought = parse_time(message.get("purchasedAt"))
    price = ppv_price(message)
    uuid = message.get("uuid")
    if bought is None or price is None or not uuid:
        return None
    key = purchase_key(str(uuid))
    payload = SaleRecorded(dedupe_key=key, kind="purchase", gross_cents=price, platform=PLATFORM, source="sync",
                           sold_at=bought, fan_id=fan_id(fan), fan=ref, message_uuid=str(uuid))
    return Fact("sale.recorded", payload.fan_id or "", payload, key, bought)


def earnings_fact(row: dict[str, Any]) -> Fact:
    """One earnings row. Raises Invalid for a row without a date or amount."""
    when = parse_time(row.get("date"))
    if when is None:
        raise Invalid(f"earnings row without a date: {row!r}")
    gross = cents(row.get("gross"))
    net = cents(row.get("net"), required=False)
    source = str(row.get("source") or "other")
    user = row.get("user") if isinstance(row.get("user"), dict) else None
    fan = fan_id(user["uuid"]) if user and user.get("uuid") else None
    key = f"fanvue:earnings:{source}:{fan or '-'}:{gross}:{row.get('date')}"
    payload = SaleRecorded(
        dedupe_key=key, kind=EARNINGS_KINDS.get(source, "other"), gross_cents=gross or 0, net_cents=net,
        currency=str(row.get("currency") or "USD"), platform=PLATFORM, source="earnings", sold_at=when,
        fan_id=fan, fan=fan_ref(user) if user else FanRef(),
    )
    # A sale without a fan still needs a subject token: its own event id.
    fact = Fact("sale.recorded", fan or "unknown", payload, key, when)
    return fact if fan else Fact("sale.recorded", str(fact.event_id), payload, key, when)
