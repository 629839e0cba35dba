"""What the sync loop makes of Fanvue's chat messages and earnings rows (domain/fanvue_sync.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from vaultline.domain.errors import Invalid
from vaultline.domain.fanvue_sync import earnings_fact, fan_message_fact, ppv_price, purchase_fact
from vaultline.domain.webhooks import message_key, parse_webhook, purchase_key

FAN = "5939aa00-0000-4000-8000-0000000000b1"
ME = "f4b2aa00-0000-4000-8000-0000000000b2"


def _msg(**kw) -> dict:
    return {"uuid": "m-1", "text": "hey", "sentAt": "2026-01-02T03:04:05.000Z", "sender": {"uuid": FAN},
            "recipient": {"uuid": ME}, "pricing": None, "purchasedAt": None, **kw}


def test_fan_message_is_the_same_event_as_its_webhook() -> None:
    polled = fan_message_fact(_msg(), FAN)
    hooked = parse_webhook("message-received", (
        b'{"messageUuid":"m-1","message":{"uuid":"m-1","text":"hey"},"sender":{"uuid":"%s"},"recipientUuid":"%s"}'
        % (FAN.encode(), ME.encode())), received_at=datetime(2026, 1, 2, tzinfo=timezone.utc)).facts[0]
    assert polled.dedupe_key == hooked.dedupe_key == message_key("m-1")
    assert polled.event_id == hooked.event_id
    assert polled.payload.source == "sync" and polled.payload.sent_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("message,price", [
    ({"pricing": {"USD": {"price": 999}}}, 999),
    ({"pricing": None}, None),
    ({"pricing": {"USD": {"price": 0}}}, None),
    ({"pricing": {"USD": {"price": True}}}, None),
    ({"price": 500}, 500),
])
def test_ppv_price(message: dict, price: int | None) -> None:
    assert ppv_price(message) == price


def test_purchase_only_when_bought_and_priced() -> None:
    assert purchase_fact(_msg(pricing={"USD": {"price": 500}}), FAN) is None
    assert purchase_fact(_msg(purchasedAt="2026-01-03T00:00:00Z"), FAN) is None  # free message
    fact = purchase_fact(_msg(pricing={"USD": {"price": 500}}, purchasedAt="2026-01-03T00:00:00Z"), FAN)
    assert fact is not None and fact.dedupe_key == purchase_key("m-1")
    sale = fact.payload
    assert (sale.kind, sale.gross_cents, sale.message_uuid, sale.source) == ("purchase", 500, "m-1", "sync")
    assert sale.sold_at == datetime(2026, 1, 3, tzinfo=timezone.utc)


@pytest.mark.parametrize("source,kind", [
    ("message", "purchase"), ("post", "purchase"), ("tip", "tip"), ("subscription", "subscription"),
    ("renewal", "renewal"), ("referral", "other"),
])
def test_earnings_kinds(source: str, kind: str) -> None:
    row = {"date": "2026-01-02T03:04:05Z", "gross": 1000, "net": 800, "currency": "USD", "source": source,
           "user": {"uuid": FAN, "handle": "sam"}}
    fact = earnings_fact(row)
    sale = fact.payload
    assert (sale.kind, sale.gross_cents, sale.net_cents, sale.fan_id, sale.source) == (kind, 1000, 800, FAN, "earnings")
    assert fact.dedupe_key == f"fanvue:earnings:{source}:{FAN}:1000:2026-01-02T03:04:05Z"
    assert fact.key == FAN and earnings_fact(row).event_id == fact.event_id


def test_earnings_row_without_a_fan_or_date() -> None:
    fact = earnings_fact({"date": "2026-01-02T03:04:05Z", "gross": 100, "net": 80, "source": "referral", "user": None})
    assert fact.payload.fan_id is None and fact.key == str(fact.event_id)
    fact.event("elena")  # a valid envelope (subject token)
    with pytest.raises(Invalid, match="date"):
        earnings_fact({"gross": 100, "source": "tip"})
