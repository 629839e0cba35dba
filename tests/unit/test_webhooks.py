"""Fanvue webhook signatures and payloads (domain/webhooks.py): pure functions, no I/O."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from vaultline.domain.errors import Invalid
from vaultline.domain.webhooks import (
    BadSignature,
    fact_event_id,
    parse_webhook,
    purchase_key,
    sign,
    verify_signature,
)
from vaultline.events import FanSubscribed, MessageReceived, SaleRecorded

SECRET = "whsec_test"
NOW = 1_764_500_000
BODY = b'{"price":1999,"routeUuid":"a1b2","recipientUuid":"f4b2","sender":{"uuid":"fan-1"}}'
RECEIVED = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAN = "5939aa00-0000-4000-8000-000000000001"
CREATOR = "f4b2aa00-0000-4000-8000-000000000002"


# --------------------------------------------------------------------------- signature


def test_valid_signature_passes_and_returns_t() -> None:
    assert verify_signature(SECRET, BODY, sign(SECRET, BODY, NOW), now=NOW + 10) == NOW


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature(SECRET, BODY, sign("another secret", BODY, NOW), now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_stale_or_future_t_is_refused(skew: int) -> None:
    header = sign(SECRET, BODY, NOW)
    with pytest.raises(BadSignature, match="window"):
        verify_signature(SECRET, BODY, header, now=NOW + skew)


def test_edge_of_window_is_accepted() -> None:
    assert verify_signature(SECRET, BODY, sign(SECRET, BODY, NOW), now=NOW + 300) == NOW


def test_tampered_body_is_refused() -> None:
    header = sign(SECRET, BODY, NOW)
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature(SECRET, BODY.replace(b"1999", b"9999"), header, now=NOW)
    # Re-serialised JSON (same data, other bytes) is not the signed body either.
    reserialised = json.dumps(json.loads(BODY)).encode()
    with pytest.raises(BadSignature):
        verify_signature(SECRET, reserialised, header, now=NOW)


def test_t_is_part_of_the_signed_payload() -> None:
    v0 = sign(SECRET, BODY, NOW).split("v0=")[1]
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature(SECRET, BODY, f"t={NOW + 1},v0={v0}", now=NOW)


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=123", f"v0={'a' * 64}", f"t=abc,v0={'a' * 64}", "t=,v0=", ",,,", "t=-5,v0=ab",
])
def test_missing_or_garbled_header_is_refused(header: str | None) -> None:
    with pytest.raises(BadSignature, match="missing|garbled"):
        verify_signature(SECRET, BODY, header, now=NOW)


def test_header_with_spaces_and_extra_parts_is_read() -> None:
    v0 = sign(SECRET, BODY, NOW).split("v0=")[1]
    assert verify_signature(SECRET, BODY, f" t={NOW} , v0={v0.upper()} , v1=zzz", now=NOW) == NOW


def test_no_secret_configured_refuses_everything() -> None:
    with pytest.raises(BadSignature, match="VAULTLINE_FANVUE_WEBHOOK_SECRET"):
        verify_signature("", BODY, sign("", BODY, NOW), now=NOW)


# --------------------------------------------------------------------------- payloads


def _parse(event: str, body: dict) -> tuple:
    raw = json.dumps(body).encode()
    p = parse_webhook(event, raw, received_at=RECEIVED)
    return p, raw


def test_message_received_camel_case() -> None:
    p, _ = _parse("message-received", {
        "message": {"uuid": "m-1", "text": "Hey! Is this still available?", "hasMedia": False,
                    "createdAt": "2025-11-06T10:32:48.100Z", "mediaUuids": ["x"], "price": 500},
        "messageUuid": "m-1",
        "sender": {"uuid": FAN, "handle": "test-user", "displayName": "Test User", "avatarUrl": "https://a"},
        "recipientUuid": CREATOR, "timestamp": "2025-11-06T10:32:49.880Z",
    })
    assert p.recipient_uuid == CREATOR
    (fact,) = p.facts
    assert fact.type == "message.received" and fact.key == FAN and fact.dedupe_key == "fanvue:message:m-1"
    msg = fact.payload
    assert isinstance(msg, MessageReceived)
    assert msg.text == "Hey! Is this still available?" and msg.media_uuids == ["x"] and msg.price_cents == 500
    assert msg.fan.handle == "test-user" and msg.fan.display_name == "Test User" and msg.source == "webhook"
    assert msg.sent_at == datetime(2025, 11, 6, 10, 32, 48, 100000, tzinfo=timezone.utc)
    event = fact.event("elena")
    assert event.event_id == fact_event_id("message.received", "fanvue:message:m-1")
    assert event.subject == f"message.received.elena.{FAN}"


def test_snake_case_payload_is_the_same_fact() -> None:
    camel, _ = _parse("message-received", {"messageUuid": "m-1", "message": {"text": "hi"},
                                           "sender": {"uuid": FAN}, "recipientUuid": CREATOR})
    snake, _ = _parse("message-received", {"message_uuid": "m-1", "message": {"text": "hi"},
                                           "sender": {"uuid": FAN}, "recipient_uuid": CREATOR})
    assert snake.recipient_uuid == CREATOR
    assert snake.facts[0].event_id == camel.facts[0].event_id


def test_purchase_of_a_message() -> None:
    p, _ = _parse("purchase", {"routeUuid": "r-1", "price": 1999, "recipientUuid": CREATOR,
                               "sender": {"uuid": FAN}, "timestamp": "2025-11-06T10:00:00Z"})
    (fact,) = p.facts
    sale = fact.payload
    assert isinstance(sale, SaleRecorded)
    assert (sale.kind, sale.gross_cents, sale.route_uuid, sale.fan_id, sale.source) == ("purchase", 1999, "r-1", FAN, "webhook")
    # The same key the sync loop gives a purchase it sees as purchasedAt on message r-1.
    assert sale.dedupe_key == fact.dedupe_key == purchase_key("r-1")
    assert sale.sold_at == datetime(2025, 11, 6, 10, tzinfo=timezone.utc)


def test_purchase_of_a_post_is_per_fan() -> None:
    p, _ = _parse("purchase", {"postUuid": "p-1", "price": 500, "recipientUuid": CREATOR, "sender": {"uuid": FAN}})
    assert p.facts[0].dedupe_key == f"fanvue:purchase:post:p-1:{FAN}"
    assert p.facts[0].payload.post_uuid == "p-1"


def test_tip_on_a_message() -> None:
    p, _ = _parse("tip", {"context": "message", "messageUuid": "m-9", "postUuid": None, "senderUuid": FAN,
                          "price": 300, "recipientUuid": CREATOR, "timestamp": "2025-11-06T10:00:00Z"})
    sale = p.facts[0].payload
    assert (sale.kind, sale.message_uuid, sale.post_uuid, sale.fan_id) == ("tip", "m-9", None, FAN)
    assert sale.dedupe_key == f"fanvue:tip:{FAN}:m-9:2025-11-06T10:00:00Z"


def test_new_subscriber_is_a_fan_event_and_a_sale() -> None:
    p, _ = _parse("new-subscriber", {"price": 1299, "recipientUuid": CREATOR, "sender": {"uuid": FAN, "handle": "h"},
                                     "timestamp": "2025-11-06T10:00:00Z"})
    sub, sale = p.facts
    assert isinstance(sub.payload, FanSubscribed) and sub.payload.price_cents == 1299
    assert sale.payload.kind == "subscription" and sale.payload.gross_cents == 1299
    assert sub.event_id != sale.event_id


def test_free_subscriber_is_no_sale() -> None:
    p, _ = _parse("new-subscriber", {"price": 0, "recipientUuid": CREATOR, "sender": {"uuid": FAN}})
    assert [f.type for f in p.facts] == ["fan.subscribed"]


def test_new_follower_and_message_read() -> None:
    p, _ = _parse("new-follower", {"recipientUuid": CREATOR, "sender": {"uuid": FAN}, "timestamp": "t1"})
    assert p.facts[0].type == "fan.followed" and p.facts[0].dedupe_key == f"fanvue:follow:{FAN}:t1"
    p, _ = _parse("message-read", {"counterpartUuid": FAN, "readMessagesCount": 3, "recipientUuid": CREATOR,
                                   "timestamp": "t2"})
    assert p.facts[0].type == "message.read" and p.facts[0].payload.read_count == 3


def test_redelivery_without_timestamp_is_the_same_event() -> None:
    body = {"recipientUuid": CREATOR, "sender": {"uuid": FAN}}
    a, _ = _parse("new-follower", body)
    b, _ = _parse("new-follower", body)
    assert a.facts[0].event_id == b.facts[0].event_id


@pytest.mark.parametrize("event,body,match", [
    ("nope", {}, "unknown Fanvue webhook event"),
    ("purchase", {"price": 100, "recipientUuid": CREATOR}, "no fan"),
    ("purchase", {"price": "lots", "sender": {"uuid": FAN}}, "cents"),
    ("purchase", {"price": 100, "sender": {"uuid": "a b.c"}}, "fan uuid"),
    ("message-received", {"sender": {"uuid": FAN}}, "messageUuid"),
])
def test_unreadable_payloads_are_invalid(event: str, body: dict, match: str) -> None:
    with pytest.raises(Invalid, match=match):
        _parse(event, body)


def test_non_json_body_is_invalid() -> None:
    with pytest.raises(Invalid, match="JSON"):
        parse_webhook("purchase", b"not json", received_at=RECEIVED)
    with pytest.raises(Invalid, match="object"):
        parse_webhook("purchase", b"[1,2]", received_at=RECEIVED)


def test_placeholder_webhook_secret_is_refused() -> None:
    from pydantic import ValidationError

    from vaultline.settings import Settings

    with pytest.raises(ValidationError, match="VAULTLINE_FANVUE_WEBHOOK_SECRET is the placeholder"):
        Settings(fanvue_webhook_secret="change-me")
    assert Settings(fanvue_webhook_secret="a-real-random-secret-0123456789").fanvue.webhook_secret
