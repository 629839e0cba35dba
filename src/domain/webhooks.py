"""Fanvue webhooks: signature verification and the flat payloads turned into our events. No I/O.

Signature (research §6.2): `X-Fanvue-Signature: t=<unix seconds>,v0=<hex>`, where v0 is
HMAC-SHA256 of f"{t}.{raw body}" with the app's signing secret; compared in constant time;
`t` must be within 5 minutes of now.

Payloads (research §6.3) are flat, camelCase in the docs (snake_case accepted too), one URL per
event kind (`/webhooks/fanvue/{event}`). Each fact gets a dedupe key and a deterministic event id
derived from it (`fact_event_id`), so a redelivered webhook, and the same fact seen by the sync
loop, publish one event. Dedupe keys (the sales handler relies on them):

    message.received  fanvue:message:<message uuid>
    message.read      fanvue:read:<fan>:<timestamp>
    sale.recorded     fanvue:purchase:message:<routeUuid | our sent message uuid>
                      fanvue:purchase:post:<post uuid>:<fan>
                      fanvue:purchase:<fan>:<price>:<timestamp>          (neither id given)
                      fanvue:tip:<fan>:<message|post uuid or ->:<timestamp>
                      fanvue:subscription:<fan>:<timestamp>
                      fanvue:earnings:<source>:<fan or ->:<gross>:<date>  (sync: earnings rows)
    fan.subscribed    fanvue:subscription:<fan>:<timestamp>
    fan.followed      fanvue:follow:<fan>:<timestamp>

`<timestamp>` is the payload's own timestamp as sent; when it has none, a digest of the raw
body stands in (a redelivery carries the same body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from vaultline.domain.errors import Invalid
from vaultline.events import (
    KEY_RE,
    NAMESPACE,
    Envelope,
    FanFollowed,
    FanRef,
    FanSubscribed,
    MessageRead,
    MessageReceived,
    Payload,
    SaleRecorded,
    new_event,
)

PLATFORM = "fanvue"
SIGNATURE_HEADER = "X-Fanvue-Signature"
SIGNATURE_WINDOW_S = 300
# The path segment of /webhooks/fanvue/{event}: one URL per event registered in Fanvue.
WEBHOOK_EVENTS: tuple[str, ...] = (
    "message-received", "message-read", "purchase", "tip", "new-subscriber", "new-follower",
)
_TEXT_MAX = 20000


# --------------------------------------------------------------------------- signature


class BadSignature(Exception):
    """The request is not provably from Fanvue: answer 401 and record nothing."""


def sign(secret: str, body: bytes, t: int) -> str:
    """The header value Fanvue sends for `body` at unix time `t` (tests and tools use it)."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v0={mac}"


def verify_signature(secret: str, body: bytes, header: str | None, *, now: float,
                     window_s: float = SIGNATURE_WINDOW_S) -> int:
    """Check `header` against the raw `body`; returns its `t`. Raises BadSignature with the
    reason (missing or garbled header, stale or future t, mismatch)."""
    if not secret:
        raise BadSignature("no webhook signing secret configured (VAULTLINE_FANVUE_WEBHOOK_SECRET)")
    if not header:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name.strip() and name.strip() not in parts:
            parts[name.strip()] = value.strip()
    t_raw, v0 = parts.get("t"), parts.get("v0")
    if not t_raw or not v0:
        raise BadSignature(f"garbled {SIGNATURE_HEADER} header (needs t=...,v0=...)")
    if not t_raw.isdigit():
        raise BadSignature(f"garbled {SIGNATURE_HEADER} header (t is not unix seconds)")
    t = int(t_raw)
    if abs(now - t) > window_s:
        raise BadSignature(f"signature timestamp outside the {window_s:.0f}s window")
    expected = hmac.new(secret.encode(), t_raw.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), v0.lower().encode()):
        raise BadSignature("signature does not match")
    return t


# --------------------------------------------------------------------------- facts


def fact_event_id(type_: str, dedupe_key: str) -> uuid.UUID:
    """The event id of one fact: the same fact from any source and any redelivery is one event."""
    return uuid.uuid5(NAMESPACE, f"fact:{type_}:{dedupe_key}")


@dataclass(frozen=True)
class Fact:
    """One event to publish once the creator is known."""

    type: str
    key: str
    payload: Payload
    dedupe_key: str
    occurred_at: datetime | None = None

    @property
    def event_id(self) -> uuid.UUID:
        return fact_event_id(self.type, self.dedupe_key)

    def event(self, creator: str) -> Envelope:
        return new_event(self.type, creator=creator, key=self.key, payload=self.payload,
                         event_id=self.event_id, occurred_at=self.occurred_at)


@dataclass(frozen=True)
class ParsedWebhook:
    event: str
    recipient_uuid: str | None
    facts: tuple[Fact, ...]


def parse_webhook(event: str, body: bytes, *, received_at: datetime) -> ParsedWebhook:
    """The facts in one webhook delivery. Raises Invalid for an unknown event kind or a body
    that is not the documented shape (no fan, no price where one is needed)."""
    if event not in WEBHOOK_EVENTS:
        raise Invalid(f"unknown Fanvue webhook event {event!r}; known: {', '.join(WEBHOOK_EVENTS)}")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("webhook body is not JSON") from None
    if not isinstance(raw, dict):
        raise Invalid("webhook body is not a JSON object")
    d = camel_keys(raw)
    recipient = _str(d.get("recipientUuid"))
    stamp = _str(d.get("timestamp")) or "sha-" + hashlib.sha256(body).hexdigest()[:24]
    when = parse_time(d.get("timestamp")) or received_at
    facts = _PARSERS[event](d, stamp, when)
    return ParsedWebhook(event, recipient, tuple(facts))


def _message_received(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    msg = d.get("message") if isinstance(d.get("message"), dict) else {}
    fan, ref = fan_of(d)
    message_uuid = _str(d.get("messageUuid")) or _str(msg.get("uuid"))
    if not message_uuid:
        raise Invalid("message-received without messageUuid")
    media = msg.get("mediaUuids") or d.get("mediaUuids") or []
    payload = MessageReceived(
        platform=PLATFORM, fan_id=fan, message_uuid=message_uuid,
        text=str(msg.get("text") or d.get("text") or "")[:_TEXT_MAX],
        sent_at=parse_time(msg.get("createdAt")) or when, fan=ref,
        media_uuids=[str(m) for m in media if m] if isinstance(media, list) else [],
        price_cents=cents(msg.get("price"), required=False), source="webhook",
    )
    return [Fact("message.received", fan, payload, message_key(message_uuid), payload.sent_at)]


def _message_read(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    fan = fan_id(d.get("counterpartUuid"))
    count = d.get("readMessagesCount")
    payload = MessageRead(platform=PLATFORM, fan_id=fan, source="webhook",
                          read_count=count if isinstance(count, int) and count >= 0 else 0)
    return [Fact("message.read", fan, payload, f"fanvue:read:{fan}:{stamp}", when)]


def _purchase(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    fan, ref = fan_of(d)
    price = cents(d.get("price"))
    route, post = _str(d.get("routeUuid")), _str(d.get("postUuid"))
    if route:
        key = purchase_key(route)
    elif post:
        key = f"fanvue:purchase:post:{post}:{fan}"
    else:
        key = f"fanvue:purchase:{fan}:{price}:{stamp}"
    payload = SaleRecorded(dedupe_key=key, kind="purchase", gross_cents=price, platform=PLATFORM,
                           source="webhook", sold_at=when, fan_id=fan, fan=ref, route_uuid=route,
                           post_uuid=post)
    return [Fact("sale.recorded", fan, payload, key, when)]


def _tip(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    fan, ref = fan_of(d)
    price = cents(d.get("price"))
    context = _str(d.get("context"))
    message, post = _str(d.get("messageUuid")), _str(d.get("postUuid"))
    if context == "post":
        message = None
    elif context == "message":
        post = None
    key = f"fanvue:tip:{fan}:{message or post or '-'}:{stamp}"
    payload = SaleRecorded(dedupe_key=key, kind="tip", gross_cents=price, platform=PLATFORM, source="webhook",
                           sold_at=when, fan_id=fan, fan=ref, message_uuid=message, post_uuid=post)
    return [Fact("sale.recorded", fan, payload, key, when)]


def _new_subscriber(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    fan, ref = fan_of(d)
    price = cents(d.get("price"), required=False)
    key = f"fanvue:subscription:{fan}:{stamp}"
    facts = [Fact("fan.subscribed", fan, FanSubscribed(platform=PLATFORM, fan_id=fan, fan=ref, price_cents=price,
                                                       source="webhook"), key, when)]
    if price:  # subscription money is also a sale
        facts.append(Fact("sale.recorded", fan, SaleRecorded(
            dedupe_key=key, kind="subscription", gross_cents=price, platform=PLATFORM, source="webhook",
            sold_at=when, fan_id=fan, fan=ref), key, when))
    return facts


def _new_follower(d: dict[str, Any], stamp: str, when: datetime) -> list[Fact]:
    fan, ref = fan_of(d)
    payload = FanFollowed(platform=PLATFORM, fan_id=fan, fan=ref, source="webhook")
    return [Fact("fan.followed", fan, payload, f"fanvue:follow:{fan}:{stamp}", when)]


_PARSERS = {
    "message-received": _message_received,
    "message-read": _message_read,
    "purchase": _purchase,
    "tip": _tip,
    "new-subscriber": _new_subscriber,
    "new-follower": _new_follower,
}


# --------------------------------------------------------------------------- shared with the sync loop


def message_key(message_uuid: str) -> str:
    return f"fanvue:message:{message_uuid}"


def purchase_key(message_uuid: str) -> str:
    """A bought PPV message: the purchase webhook's routeUuid or our sent message's uuid."""
    return f"fanvue:purchase:message:{message_uuid}"


_CAMEL = re.compile(r"_([a-z0-9])")


def camel_keys(obj: Any) -> Any:
    """snake_case keys -> camelCase, recursively (camelCase keys are left alone)."""
    if isinstance(obj, dict):
        return {(_CAMEL.sub(lambda m: m.group(1).upper(), k) if isinstance(k, str) else k): camel_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [camel_keys(v) for v in obj]
    return obj


def fan_id(value: Any) -> str:
    fan = _str(value)
    if not fan or not KEY_RE.match(fan):
        raise Invalid(f"not a fan uuid: {value!r}")
    return fan


def fan_of(d: dict[str, Any]) -> tuple[str, FanRef]:
    """The fan a payload is about: `sender{uuid,...}` (or `user`, `follower`), else `senderUuid`."""
    for name in ("sender", "user", "follower", "fan"):
        who = d.get(name)
        if isinstance(who, dict) and who.get("uuid"):
            return fan_id(who["uuid"]), fan_ref(who)
    for name in ("senderUuid", "userUuid", "fanUuid", "followerUuid"):
        if d.get(name):
            return fan_id(d[name]), FanRef()
    raise Invalid("payload names no fan (sender.uuid or senderUuid)")


def fan_ref(who: dict[str, Any]) -> FanRef:
    return FanRef(handle=_str(who.get("handle")), display_name=_str(who.get("displayName") or who.get("nickname")))


def cents(value: Any, *, required: bool = True) -> int | None:
    """Fanvue amounts are integer minor units (cents)."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise Invalid(f"not an amount in cents: {value!r}")
    return int(value)


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 (with Z or an offset) or unix seconds/milliseconds; None when absent or unreadable."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, timezone.utc)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    s = str(value).strip()
    return s or None
