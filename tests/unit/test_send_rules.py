"""The send guard, PPV pricing, suggest-ppv ranking and sale matching (domain/sends.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from vaultline.domain import sends as rules
from vaultline.domain.similarity import NEAR_DUPLICATE_DISTANCE, phash_distance
from vaultline.handlers import ingest

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
BASE = "f0e1d2c3b4a59687"


def flip(h: str, bits: int) -> str:
    """`h` with its lowest `bits` bits flipped."""
    return f"{int(h, 16) ^ ((1 << bits) - 1):016x}"


def prior(content: uuid.UUID, phash: str | None, **kw) -> rules.PriorSend:
    return rules.PriorSend(send_id=uuid.uuid4(), content_id=content, phash=phash, status=kw.pop("status", "sent"),
                           reserved_at=T0, sent_at=kw.pop("sent_at", T0), **kw)  # fmt: skip


def test_the_guard_uses_the_ingest_threshold():
    assert ingest.NEAR_DUPLICATE_DISTANCE is NEAR_DUPLICATE_DISTANCE
    assert phash_distance(BASE, flip(BASE, 5)) == 5
    assert phash_distance(BASE, None) is None and phash_distance(BASE, "zz") is None


def test_exact_content_is_refused_naming_the_earlier_send():
    a = uuid.uuid4()
    history = [prior(a, BASE, message_uuid="m-1", price_cents=999)]
    [v] = rules.guard([rules.Candidate(a, BASE)], history)
    assert v.exact and v.distance == 0
    text = rules.refusal([v], "fan-1")
    assert str(a) in text and "2026-11-01 12:00 UTC" in text and "m-1" in text and "$9.99" in text


@pytest.mark.parametrize("bits, refused", [(0, True), (NEAR_DUPLICATE_DISTANCE, True), (NEAR_DUPLICATE_DISTANCE + 1, False)])
def test_near_copies_within_the_threshold_are_refused(bits, refused):
    had, new = uuid.uuid4(), uuid.uuid4()
    violations = rules.guard([rules.Candidate(new, flip(BASE, bits))], [prior(had, BASE)])
    assert bool(violations) is refused
    if refused:
        assert not violations[0].exact and violations[0].distance == bits
        assert "near-copy" in violations[0].describe("fan-1") and str(had) in violations[0].describe("fan-1")


def test_content_without_a_phash_is_only_guarded_exactly():
    a, b = uuid.uuid4(), uuid.uuid4()
    assert rules.guard([rules.Candidate(b, None)], [prior(a, BASE)]) == []
    assert rules.guard([rules.Candidate(a, None)], [prior(a, None)])


def test_unknown_and_stale_reservations_must_be_settled_first():
    now = T0 + rules.STALE_RESERVATION + timedelta(seconds=1)
    fresh = prior(uuid.uuid4(), BASE, status="reserved")
    fresh = rules.PriorSend(**{**fresh.__dict__, "reserved_at": now - timedelta(seconds=5)})
    stale = prior(uuid.uuid4(), BASE, status="reserved")
    unknown = prior(uuid.uuid4(), BASE, status="unknown")
    sent = prior(uuid.uuid4(), BASE)
    assert rules.unresolved([fresh, stale, unknown, sent], now) == [stale, unknown]


@pytest.mark.parametrize("price, ok", [(None, True), (0, True), (299, False), (300, True), (-1, False)])
def test_ppv_minimum(price, ok):
    if ok:
        rules.check_price(price)
    else:
        with pytest.raises(ValueError):
            rules.check_price(price)


def test_price_tiers_follow_lifetime_spend():
    tiers = [rules.PriceTier(0, 500), rules.PriceTier(10_000, 1_500), rules.PriceTier(1_000, 900)]
    assert rules.price_for(0, tiers) == 500
    assert rules.price_for(999, tiers) == 500
    assert rules.price_for(1_000, tiers) == 900
    assert rules.price_for(50_000, tiers) == 1_500
    assert rules.price_for(0, [rules.PriceTier(0, 100)]) == rules.PPV_MIN_CENTS
    assert rules.price_for(0) == rules.DEFAULT_TIERS[0].price_cents


def test_suggestions_skip_what_the_fan_has_and_rank_by_purchases_then_recency():
    had, near, lingerie, beach_new, beach_old = (uuid.uuid4() for _ in range(5))
    offer = [
        rules.Offerable(had, BASE, "lingerie", ("red",), T0),
        rules.Offerable(near, flip(BASE, 3), "lingerie", ("red",), T0),
        rules.Offerable(lingerie, "0000000000000000", "lingerie", ("red", "lace"), T0 - timedelta(days=30)),
        rules.Offerable(beach_new, "ffffffffffffffff", "beach", (), T0),
        rules.Offerable(beach_old, "00000000ffffffff", "beach", (), T0 - timedelta(days=60)),
    ]
    bought = [rules.Bought("lingerie", ("red",)), rules.Bought("lingerie", ("lace", "red"))]
    got = rules.suggest(offer, [prior(had, BASE)], bought, spend_cents=6_000, now=T0)
    assert [s.content_id for s in got] == [lingerie, beach_new, beach_old]
    assert all(s.price_cents == 1_499 for s in got)
    assert "bought 2x in lingerie" in got[0].reasons[0]


def report(**kw) -> rules.SaleReport:
    base = dict(kind="purchase", gross_cents=999, fan_id="fan-1", sold_at=T0, source="webhook")
    return rules.SaleReport(**{**base, **kw})


def known(**kw) -> rules.KnownSale:
    base = dict(sale_id=uuid.uuid4(), kind="purchase", gross_cents=999, fan_id="fan-1", occurred_at=T0, sources=("webhook",))
    return rules.KnownSale(**{**base, **kw})


def test_same_sale_by_platform_ids_even_across_fields():
    k = known(route_uuid="r-1", matched_message_uuid="m-1")
    assert rules.same_sale(report(source="sync", message_uuid="m-1"), k) == "ids"
    assert rules.same_sale(report(source="sync", route_uuid="r-1", sold_at=T0 + timedelta(days=1)), k) == "ids"
    assert rules.same_sale(report(source="sync", message_uuid="m-2"), k) is None  # other ids: another sale


def test_same_sale_by_fan_amount_and_window_only_from_another_source():
    k = known()
    assert rules.same_sale(report(source="earnings", sold_at=T0 + timedelta(minutes=3)), k) == "window"
    assert rules.same_sale(report(source="earnings", sold_at=T0 + timedelta(minutes=30)), k) is None
    assert rules.same_sale(report(source="earnings", gross_cents=1000), k) is None
    assert rules.same_sale(report(source="earnings", kind="tip"), k) is None
    # Two real $9.99 purchases reported by the webhook five minutes apart are two sales.
    assert rules.same_sale(report(source="webhook", sold_at=T0 + timedelta(minutes=5)), k) is None


def test_find_duplicate_prefers_ids_then_the_closest_in_time():
    far, close = known(occurred_at=T0 - timedelta(minutes=8)), known(occurred_at=T0 + timedelta(minutes=1))
    by_ids = known(occurred_at=T0 - timedelta(days=2), message_uuid="m-9")
    assert rules.find_duplicate(report(source="earnings"), [far, close]) == close
    assert rules.find_duplicate(report(source="sync", message_uuid="m-9"), [far, close, by_ids]) == by_ids
    assert rules.find_duplicate(report(source="earnings"), []) is None


def send(message: str, price: int | None, sent_at: datetime, purchased: datetime | None = None) -> rules.SendForSale:
    return rules.SendForSale(uuid.uuid4(), uuid.uuid4(), message, price, sent_at, purchased)


def test_match_purchase_by_message_then_fan_price_and_time():
    a1, a2 = send("m-1", 999, T0 - timedelta(hours=2)), send("m-1", 999, T0 - timedelta(hours=2))
    assert rules.match_purchase(report(route_uuid="m-1"), [a1, a2], []) == [a1, a2]
    older, newer = send("m-2", 999, T0 - timedelta(days=3)), send("m-3", 999, T0 - timedelta(hours=1))
    other_price, after = send("m-4", 1499, T0 - timedelta(hours=1)), send("m-5", 999, T0 + timedelta(hours=1))
    bought = send("m-6", 999, T0 - timedelta(minutes=30), purchased=T0 - timedelta(minutes=20))
    assert rules.match_purchase(report(), [], [older, newer, other_price, after, bought]) == [newer]
    assert rules.match_purchase(report(kind="tip"), [], [newer]) == []
    assert rules.match_purchase(report(), [], [send("m-7", 999, T0 - timedelta(days=90))]) == []


def test_split_revenue_keeps_every_cent():
    assert rules.split_revenue(1000, 3) == [334, 333, 333]
    assert sum(rules.split_revenue(999, 4)) == 999
    assert rules.split_revenue(5, 0) == []


def test_near_copies_inside_one_message_are_found():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pairs = rules.copies_within([rules.Candidate(a, BASE), rules.Candidate(b, "0" * 16), rules.Candidate(c, flip(BASE, 2))])
    assert pairs == [(a, c, 2)]
    assert rules.copies_within([rules.Candidate(a, None), rules.Candidate(b, None)]) == []
