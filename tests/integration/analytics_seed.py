"""A seeded set of images, sends, sales and replies for creator `elena`, and the numbers a
person computed by hand from it (EXPECTED_*). Shared by the analytics integration tests,
the CLI/report tests and the metrics tests."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

from vaultline.events import Envelope, new_event

CREATOR = "elena"
D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
C = {i: uuid.UUID(int=i) for i in range(1, 7)}  # c1..c6


def at(day: date, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=timezone.utc)


def _ev(type_: str, key: object, payload: dict, when: datetime) -> Envelope:
    return new_event(type_, creator=CREATOR, key=str(key), payload=payload, occurred_at=when)


def _sent(c: int, msg: str, fan: str, price: int | None, when: datetime, bundle: tuple[int, ...] = ()) -> Envelope:
    return _ev("media.sent", C[c], {"platform": "local", "fan_id": fan, "content_id": str(C[c]), "message_uuid": msg,
                                    "price_cents": price, "bundle": [str(C[b]) for b in bundle]}, when)  # fmt: skip


def _sale(key: str, kind: str, cents: int, fan: str, when: datetime, **ids: object) -> Envelope:
    payload = {"dedupe_key": key, "kind": kind, "gross_cents": cents, "platform": "local", "source": "local",
               "sold_at": when.isoformat(), "fan_id": fan, **{k: str(v) for k, v in ids.items()}}  # fmt: skip
    return _ev("sale.recorded", key, payload, when)


def seed_events() -> list[Envelope]:
    """In publishing order. Sale s3 names message m5 before m5's media.sent arrives."""
    ev: list[Envelope] = []
    # D1: six images, c5 cropped by fallback, c6 unreadable; four approved, one rejected, four uploaded.
    for i in range(1, 7):
        ev.append(_ev("image.generated", C[i], {"storage_key": f"elena/1_raw/{C[i]}.png", "sha256": f"{i:064x}",
                                                "phash": f"{i:016x}", "size_bytes": 10, "original_filename": f"{i}.png"},
                      at(D1, 8)))  # fmt: skip
    for i in range(1, 6):
        ev.append(_ev("image.cropped", C[i], {"cropped_key": f"k{i}", "mode_used": "fallback" if i == 5 else "no_face",
                                              "face_found": i != 5, "cut_y": 10,
                                              "fallback_reason": "no face" if i == 5 else None}, at(D1, 8, 5)))  # fmt: skip
    ev.append(_ev("image.crop_failed", C[6], {"reason": "unreadable"}, at(D1, 8, 5)))
    approvals = {1: ("ppv", "lingerie", 1500), 2: ("ppv", "lingerie", 800), 3: ("ppv", "beach", 2500), 4: ("feed", "beach", None)}
    for i, (vault, cat, price) in approvals.items():
        ev.append(_ev("image.approved", C[i], {"vault": vault, "category": cat, "price_cents": price}, at(D1, 9)))
    ev.append(_ev("image.rejected", C[5], {"reason": "bad crop"}, at(D1, 9)))
    for i, (vault, _, _) in approvals.items():
        ev.append(_ev("media.uploaded", C[i], {"platform": "local", "media_uuid": f"mu{i}", "vault": vault,
                                               "vault_folder": f"elena-{vault}"}, at(D1, 10)))  # fmt: skip
    # D2: sends. m5 is a bundle of c2+c3 (primary c2: lingerie); m6 is free.
    ev += [
        _sent(1, "m1", "fan_a", 1500, at(D2, 9)),
        _sent(1, "m2", "fan_b", 1500, at(D2, 9)),
        _sent(2, "m3", "fan_a", 800, at(D2, 9)),
        _sent(3, "m4", "fan_c", 2500, at(D2, 9)),
        _sale("s3", "purchase", 2000, "fan_b", at(D2, 13), message_uuid="m5"),  # before its send
        _sent(2, "m5", "fan_b", 2000, at(D2, 9, 30), bundle=(2, 3)),
        _sent(3, "m5", "fan_b", 2000, at(D2, 9, 30), bundle=(2, 3)),
        _sent(4, "m6", "fan_c", None, at(D2, 9)),
    ]
    # Sales: s1 reported twice (webhook and sync: same dedupe_key, other event id).
    ev += [
        _sale("s1", "purchase", 1500, "fan_a", at(D2, 12), message_uuid="m1"),
        _sale("s1", "purchase", 1500, "fan_a", at(D2, 12), message_uuid="m1"),
        _sale("s2", "purchase", 2500, "fan_c", at(D2, 12), route_uuid="m4"),
        _sale("s4", "tip", 700, "fan_a", at(D2, 14)),
        _sale("s6", "purchase", 300, "fan_c", at(D2, 15), content_id=C[3]),
        _sale("s5", "subscription", 999, "fan_d", at(D3, 8)),
    ]
    # Chat on D2: replies after 600 s (fan_a, oldest of two messages), 60 s, 1800 s; one extra reply.
    def received(fan: str, when: datetime, n: int) -> Envelope:
        return _ev("message.received", fan, {"platform": "local", "fan_id": fan, "message_uuid": f"in-{fan}-{n}",
                                             "text": "hi", "fan": {"handle": f"@{fan}"}}, when)  # fmt: skip

    def reply(fan: str, when: datetime, n: int) -> Envelope:
        return _ev("message.sent", fan, {"platform": "local", "fan_id": fan, "message_uuid": f"out-{fan}-{n}",
                                         "text": "hello", "approved_by": "op"}, when)  # fmt: skip

    t = at(D2, 10)
    ev += [
        received("fan_a", t, 1), received("fan_a", t + timedelta(minutes=5), 2), reply("fan_a", t + timedelta(minutes=10), 1),
        received("fan_b", t + timedelta(hours=1), 1), reply("fan_b", t + timedelta(hours=1, minutes=1), 1),
        received("fan_c", t + timedelta(hours=2), 1), reply("fan_c", t + timedelta(hours=2, minutes=30), 1),
        reply("fan_c", t + timedelta(hours=2, minutes=40), 2),
    ]  # fmt: skip
    some = uuid.uuid4()
    ev += [
        _ev("reply.suggested", "fan_a", {"message_event_id": str(some), "fan_id": "fan_a", "drafts": ["x"]}, t),
        _ev("reply.suggested", "fan_b", {"message_event_id": str(some), "fan_id": "fan_b", "status": "flagged",
                                         "flags": ["off-platform payment"]}, t),  # fmt: skip
        _ev("fan.followed", "fan_d", {"platform": "local", "fan_id": "fan_d"}, at(D3, 7)),
        _ev("fan.subscribed", "fan_d", {"platform": "local", "fan_id": "fan_d", "price_cents": 999}, at(D3, 8)),
    ]
    return ev


# ---------------------------------------------------------------- computed by hand, D1..D3
EXPECTED_TOTALS = {
    "images_generated": 6, "images_approved": 4, "images_rejected": 1, "images_uploaded": 4, "upload_failures": 0,
    "crop_fallbacks": 1, "crop_failures": 1,
    "sends": 7,  # media.sent events: m1 m2 m3 m4 m5(c2) m5(c3) m6
    "ppv_offers": 5,  # m1..m5 (m6 is free; m5 is one offer)
    "purchases": 4,  # s1 s2 s3 s6 (s1's second report is the same sale)
    "ppv_purchases": 3,  # s1 (m1), s2 (route m4), s3 (m5, attributed once m5 arrived); s6 named no message
    "conversion": 0.6,
    "sales": 6,
    "revenue_cents": 1500 + 2500 + 2000 + 300 + 700 + 999,  # 7999
    "messages_received": 4, "replies_suggested": 2, "replies_flagged": 1, "replies_sent": 4,
    "median_reply_seconds": 600.0,  # of 600, 60, 1800
    "fans_followed": 1, "fans_subscribed": 1,
}  # fmt: skip
EXPECTED_FUNNEL = [("generated", 6), ("approved", 4), ("uploaded", 4), ("sent", 4), ("purchased", 3)]
EXPECTED_REVENUE_BY_KIND = {"purchase": 6300, "subscription": 999, "tip": 700}
EXPECTED_REVENUE_BY_VAULT = {"ppv": 6300}  # c1 1500, c3 2500 + 300, c2 2000
EXPECTED_REVENUE_BY_CATEGORY = {"beach": 2800, "lingerie": 3500}
# (offers, purchases, rate)
EXPECTED_CONVERSION_BY_CATEGORY = {"lingerie": (4, 2, 0.5), "beach": (1, 1, 1.0)}
EXPECTED_CONVERSION_BY_BAND = [("$5–9.99", 1, 0, 0.0), ("$10–19.99", 2, 1, 0.5), ("$20–49.99", 2, 2, 1.0)]
# (content, sends, purchases, revenue)
EXPECTED_TOP_CONTENT = [(C[3], 2, 2, 2800), (C[2], 2, 1, 2000), (C[1], 2, 1, 1500), (C[4], 1, 0, 0)]
# (fan, sales, purchases, revenue)
EXPECTED_TOP_FANS = [("fan_c", 2, 2, 2800), ("fan_a", 2, 1, 2200), ("fan_b", 1, 1, 2000), ("fan_d", 1, 0, 999)]
