"""send: a person sends uploaded content to a fan, exactly once, never twice (nor a near-copy).

The platform has no idempotency key, so the order of things is what makes it exactly once:

1. Check the guard (the fan's live sends, exact and near-duplicate by perceptual hash) and
   insert the `sends` rows as `reserved` (one atomic statement) only if nothing was reserved
   for the fan since the check (else check again: optimistic, so nothing is held between the
   two). A unique index that ignores failed rows is the database's own backstop: a second live
   row of one content to one fan cannot exist. Only once the rows are committed
2. call the platform once.
3. Success: one transaction marks the rows `sent` (message uuid) and puts one `media.sent`
   per content into the outbox. A clear refusal: the rows are released (`failed`) with the
   platform's message. An ambiguous failure (timeout, dropped connection, 5xx): the rows
   become `unknown` and are reconciled at once by reading the fan's messages: a message
   carrying exactly those media means it went out (`sent`), none means it did not (`failed`).
   Any later send to this fan reconciles leftover `unknown` (and stale `reserved`) rows first,
   so nothing is ever retried blind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from vaultline.domain import sends as rules
from vaultline.domain.errors import Conflict, Invalid, NotFound
from vaultline.events import KEY_RE, NAMESPACE, Envelope, derived_id, new_event, utcnow

log = structlog.get_logger("vaultline.sends")

MAX_CONTENTS = 20


class SendRefused(Exception):
    """The platform refused the message for good (validation, not contactable, auth, scope)."""


class SendOutcomeUnknown(Exception):
    """The request may have reached the platform (timeout, dropped connection, 5xx)."""


@dataclass(frozen=True)
class PlatformMessage:
    uuid: str
    media_uuids: tuple[str, ...]
    sent_at: datetime | None = None
    price_cents: int | None = None
    purchased_at: datetime | None = None
    from_creator: bool = True
    text: str | None = None
    has_media: bool | None = None  # when the platform says so without listing the media


class MessagePlatform(Protocol):
    name: str

    async def send_message(self, fan_id: str, text: str | None, media_uuids: Sequence[str], price_cents: int | None) -> str:
        """-> the platform's message uuid. Raises SendRefused or SendOutcomeUnknown."""

    async def fan_messages(self, fan_id: str, *, limit: int = 50) -> list[PlatformMessage]:
        """The conversation's most recent messages, newest first."""


@dataclass(frozen=True)
class ContentForSend:
    content_id: uuid.UUID
    creator: str
    status: str
    platform: str | None
    media_uuid: str | None
    phash: str | None
    price_cents: int | None


@dataclass(frozen=True)
class NewSend:
    send_id: uuid.UUID
    attempt_id: uuid.UUID
    content_id: uuid.UUID
    media_uuid: str
    price_cents: int | None
    text: str | None
    generation: int
    forced: bool
    reason: str | None
    sent_by: str | None


@dataclass(frozen=True)
class AttemptRow:
    send_id: uuid.UUID
    attempt_id: uuid.UUID
    content_id: uuid.UUID
    media_uuid: str | None
    fan_id: str
    creator: str
    platform: str
    status: str
    price_cents: int | None
    text: str | None
    forced: bool
    reason: str | None
    sent_by: str | None
    reserved_at: datetime
    message_uuid: str | None = None
    sent_at: datetime | None = None


class HistoryChanged(Exception):
    """Another send to the fan was reserved between this check's read and its reservation:
    nothing was reserved; check again."""


class FanTx(Protocol):
    """One check of a fan and its reservation: what it reads is one consistent snapshot of the
    fan's sends; `reserve` commits only if no other send to the fan was reserved since."""

    async def contents(self, creator: str, ids: Sequence[uuid.UUID]) -> list[ContentForSend]: ...

    async def history(self) -> list[rules.PriorSend]:
        """The fan's live sends (reserved, sent, unknown) with each content's phash."""

    async def reserve(self, rows: Sequence[NewSend]) -> None:
        """Insert the rows as `reserved` (and the fan, if new), committed on return. Raises
        HistoryChanged when another send to the fan was reserved since the read (nothing is
        inserted), Conflict when the unique index refuses a second live send."""


class SendStore(Protocol):
    def for_fan(self, creator: str, platform: str, fan_id: str) -> AbstractAsyncContextManager[FanTx]: ...

    async def attempt(self, attempt_id: uuid.UUID) -> list[AttemptRow]: ...

    async def mark_sent(self, attempt_id: uuid.UUID, message_uuid: str, sent_at: datetime, events: Sequence[Envelope]) -> None:
        """One transaction: rows `sent` + the media.sent events into the outbox."""

    async def mark(self, attempt_id: uuid.UUID, status: str, error: str) -> None:
        """`failed` (released) or `unknown`."""

    async def message_known(self, message_uuid: str) -> bool:
        """Some send already claims this platform message."""


@dataclass(frozen=True)
class SendRequest:
    creator: str
    fan_id: str
    content_ids: tuple[uuid.UUID, ...]
    price_cents: int | None = None
    text: str | None = None
    force: bool = False
    reason: str | None = None
    sent_by: str | None = None


@dataclass
class SendResult:
    status: str  # sent | failed
    fan_id: str
    platform: str
    content_ids: list[uuid.UUID]
    attempt_id: uuid.UUID
    message_uuid: str | None = None
    price_cents: int | None = None
    forced: bool = False
    reason: str | None = None
    reconciled: bool = False
    event_ids: list[uuid.UUID] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "fan_id": self.fan_id,
            "platform": self.platform,
            "content_ids": [str(c) for c in self.content_ids],
            "attempt_id": str(self.attempt_id),
            "message_uuid": self.message_uuid,
            "price_cents": self.price_cents,
            "forced": self.forced,
            "reason": self.reason,
            "reconciled": self.reconciled,
            "event_ids": [str(e) for e in self.event_ids],
        }


def validate(req: SendRequest) -> SendRequest:
    if not KEY_RE.match(req.fan_id or ""):
        raise Invalid(f"fan must be the platform's fan uuid or a name of [A-Za-z0-9_-] (got {req.fan_id!r})")
    if not req.content_ids:
        raise Invalid("nothing to send: give at least one content id")
    if len(set(req.content_ids)) != len(req.content_ids):
        raise Invalid("the same content id is listed twice")
    if len(req.content_ids) > MAX_CONTENTS:
        raise Invalid(f"at most {MAX_CONTENTS} contents in one message")
    try:
        rules.check_price(req.price_cents)
    except ValueError as e:
        raise Invalid(str(e)) from None
    if req.force and not (req.reason and req.reason.strip()):
        raise Invalid("--force needs a --reason (it is recorded with the send)")
    if req.text is not None and len(req.text) > 5000:
        raise Invalid("text must be at most 5000 characters")
    return req


def parse_content_ids(raw: Sequence[str]) -> tuple[uuid.UUID, ...]:
    out = []
    for r in raw:
        try:
            out.append(uuid.UUID(str(r).strip()))
        except ValueError:
            raise Invalid(f"not a content id: {r!r}") from None
    return tuple(out)


def _check_contents(req: SendRequest, platform: str, found: list[ContentForSend]) -> dict[uuid.UUID, ContentForSend]:
    by_id = {c.content_id: c for c in found}
    for cid in req.content_ids:
        c = by_id.get(cid)
        if c is None:
            raise NotFound(f"no content with id {cid}")
        if c.creator != req.creator:
            raise Invalid(f"content {cid} belongs to creator {c.creator}, not {req.creator}")
        if not c.media_uuid or c.status != "uploaded":
            raise Invalid(f"content {cid} is not uploaded to the platform yet (status {c.status})")
        if c.platform and c.platform != platform:
            raise Invalid(f"content {cid} was uploaded to {c.platform}, but {req.creator} sends through {platform}")
    return by_id


async def send(
    req: SendRequest,
    *,
    store: SendStore,
    platform: MessagePlatform,
    now: Callable[[], datetime] = utcnow,
) -> SendResult:
    """Reserve, call the platform once, record the outcome. Raises Conflict when the fan
    already has a content (or a near-copy) and the send is not forced."""
    validate(req)
    attempt_id = uuid.uuid4()
    for _ in range(5):
        async with store.for_fan(req.creator, platform.name, req.fan_id) as tx:
            contents = _check_contents(req, platform.name, await tx.contents(req.creator, req.content_ids))
            history = await tx.history()
            pending = rules.unresolved(history, now())
            if not pending:
                candidates = [rules.Candidate(c, contents[c].phash) for c in req.content_ids]
                twins = rules.copies_within(candidates)
                if twins and not req.force:
                    a, b, d = twins[0]
                    raise Conflict(f"refused: content {a} and content {b} are near-copies of each other ({d} bits); send one")
                violations = rules.guard(candidates, history)
                if violations and not req.force:
                    raise Conflict(rules.refusal(violations, req.fan_id))
                generations = {v.candidate: v.prior.generation + 1 for v in violations if v.exact}
                try:
                    await tx.reserve(
                        [
                            NewSend(
                                send_id=uuid.uuid4(),
                                attempt_id=attempt_id,
                                content_id=cid,
                                media_uuid=contents[cid].media_uuid or "",
                                price_cents=req.price_cents or None,
                                text=req.text,
                                generation=generations.get(cid, 0),
                                forced=req.force and bool(violations or twins),
                                reason=req.reason if req.force else None,
                                sent_by=req.sent_by,
                            )
                            for cid in req.content_ids
                        ]
                    )
                except HistoryChanged:
                    continue  # another send to this fan got in first: check again, seeing it
                break
        # Earlier sends to this fan whose outcome is unknown: settle them before sending again.
        for attempt in {p.attempt_id or p.send_id for p in pending}:
            settled = await reconcile(attempt, store=store, platform=platform)
            if settled.status == "unknown":
                raise Conflict(
                    f"an earlier send to fan {req.fan_id} (contents {', '.join(map(str, settled.content_ids))}) is "
                    f"unconfirmed and {platform.name} cannot be read to settle it now; nothing was sent, try again later"
                )
    else:
        raise Conflict(
            f"earlier sends to fan {req.fan_id} are still unsettled, or other sends to them keep arriving; "
            "nothing was sent, try again shortly"
        )

    rows = await store.attempt(attempt_id)
    media = [r.media_uuid or "" for r in sorted(rows, key=lambda r: req.content_ids.index(r.content_id))]
    try:
        message_uuid = await asyncio.wait_for(
            platform.send_message(req.fan_id, req.text, media, req.price_cents or None),
            rules.SEND_DEADLINE.total_seconds(),
        )
    except TimeoutError:
        await store.mark(attempt_id, "unknown", f"no answer within {rules.SEND_DEADLINE}")
        return await _settle_or_explain(attempt_id, store, platform, "no answer in time")
    except SendRefused as e:
        await store.mark(attempt_id, "failed", str(e))
        raise Invalid(f"{platform.name} refused the message: {e}") from None
    except SendOutcomeUnknown as e:
        log.warning("send outcome unknown; reconciling", attempt=str(attempt_id), error=str(e))
        await store.mark(attempt_id, "unknown", str(e))
        return await _settle_or_explain(attempt_id, store, platform, str(e))
    except Exception as e:  # anything else: we cannot know what reached the platform
        log.exception("send failed unexpectedly; reconciling", attempt=str(attempt_id))
        await store.mark(attempt_id, "unknown", f"{type(e).__name__}: {e}")
        return await _settle_or_explain(attempt_id, store, platform, f"{type(e).__name__}: {e}")
    return await _finish(attempt_id, message_uuid, store=store, platform=platform, when=now(), reconciled=False)


async def _settle_or_explain(attempt_id: uuid.UUID, store: SendStore, platform: MessagePlatform, why: str) -> SendResult:
    result = await reconcile(attempt_id, store=store, platform=platform)
    if result.status == "sent":
        return result
    if result.status == "failed":
        raise Conflict(
            f"{platform.name} did not confirm the message ({why}); nothing was delivered, so it was released "
            "and may be sent again"
        )
    raise Conflict(
        f"{platform.name} did not confirm the message ({why}) and its messages could not be read; "
        "the send stays unknown and is settled before any retry"
    )


def _events(rows: Sequence[AttemptRow], platform: str, message_uuid: str, sent_at: datetime) -> list[Envelope]:
    bundle = [r.content_id for r in rows]
    return [
        new_event(
            "media.sent",
            creator=r.creator,
            key=r.content_id,
            event_id=derived_id(r.send_id, "media.sent"),
            occurred_at=sent_at,  # the row's sent_at: a replay of the event rebuilds the same row
            payload={
                "platform": platform,
                "fan_id": r.fan_id,
                "content_id": r.content_id,
                "message_uuid": message_uuid,
                "price_cents": r.price_cents,
                "text": r.text,
                "bundle": bundle if len(bundle) > 1 else [],
                "forced": r.forced,
                "reason": r.reason,
                "sent_by": r.sent_by,
            },
        )
        for r in rows
    ]


async def _finish(
    attempt_id: uuid.UUID, message_uuid: str, *, store: SendStore, platform: MessagePlatform, when: datetime, reconciled: bool
) -> SendResult:
    rows = await store.attempt(attempt_id)
    events = _events(rows, platform.name, message_uuid, when)
    await store.mark_sent(attempt_id, message_uuid, when, events)
    first = rows[0]
    log.info("sent", fan=first.fan_id, message_uuid=message_uuid, contents=len(rows), reconciled=reconciled)
    return SendResult(
        status="sent",
        fan_id=first.fan_id,
        platform=platform.name,
        content_ids=[r.content_id for r in rows],
        attempt_id=attempt_id,
        message_uuid=message_uuid,
        price_cents=first.price_cents,
        forced=any(r.forced for r in rows),
        reason=first.reason,
        reconciled=reconciled,
        event_ids=[e.event_id for e in events],
    )


async def reconcile(attempt_id: uuid.UUID, *, store: SendStore, platform: MessagePlatform) -> SendResult:
    """Settle a send whose outcome is unknown by reading the fan's messages: a message of ours
    carrying exactly these media, sent after the reservation, that no other send claims, means
    it went out. None means it did not: the rows are released. Unreadable: stays unknown."""
    rows = await store.attempt(attempt_id)
    if not rows:
        raise NotFound(f"no send attempt {attempt_id}")
    first = rows[0]
    base = SendResult(
        status=first.status,
        fan_id=first.fan_id,
        platform=first.platform,
        content_ids=[r.content_id for r in rows],
        attempt_id=attempt_id,
        message_uuid=first.message_uuid,
        price_cents=first.price_cents,
        forced=any(r.forced for r in rows),
        reason=first.reason,
        reconciled=True,
    )
    if first.status in ("sent", "failed"):
        return base
    media = {r.media_uuid for r in rows if r.media_uuid}
    try:
        messages = await platform.fan_messages(first.fan_id)
    except Exception as e:  # the platform cannot be read now: leave it unknown, retry later
        log.warning("reconcile: could not read the fan's messages", attempt=str(attempt_id), error=str(e))
        if first.status == "reserved":
            await store.mark(attempt_id, "unknown", f"could not read messages to reconcile: {e}")
        base.status = "unknown"
        return base
    earliest = first.reserved_at - rules.CLOCK_SKEW
    ours = [
        m
        for m in sorted(messages, key=lambda m: m.sent_at or first.reserved_at)
        if m.from_creator and (m.sent_at is None or m.sent_at >= earliest)
    ]
    # A message carrying exactly these media. Older API versions list no media uuids on
    # messages: then one with media, the same price and the same text is the one.
    exact = [m for m in ours if m.media_uuids and set(m.media_uuids) == media]
    loose = [
        m
        for m in ours
        if not m.media_uuids
        and m.has_media
        and (m.price_cents or None) == (first.price_cents or None)
        and (m.text or "") == (first.text or "")
    ]
    for m in exact + loose:
        if await store.message_known(m.uuid):
            continue
        log.info("reconciled: the message went out", attempt=str(attempt_id), message_uuid=m.uuid)
        return await _finish(attempt_id, m.uuid, store=store, platform=platform, when=m.sent_at or first.reserved_at, reconciled=True)
    await store.mark(attempt_id, "failed", "not delivered: no such message on the platform (reconciled)")
    log.info("reconciled: nothing went out; released", attempt=str(attempt_id))
    base.status = "failed"
    return base


# --------------------------------------------------------------------------- suggest-ppv


class SendReads(Protocol):
    async def history(self, creator: str, platform: str, fan_id: str) -> list[rules.PriorSend]: ...

    async def offerable(
        self, creator: str, platform: str, *, fan_id: str | None = None, now: datetime | None = None,
        top: int | None = None,
    ) -> list[rules.Offerable]:
        """The creator's offerable content; given fan_id, now and top it may leave out rows that
        cannot be in rules.suggest's `top` for that fan (never one that can)."""

    async def bought(self, creator: str, platform: str, fan_id: str) -> list[rules.Bought]: ...

    async def spend_cents(self, creator: str, platform: str, fan_id: str) -> int: ...


async def suggest_ppv(
    reads: SendReads,
    *,
    creator: str,
    platform: str,
    fan_id: str,
    tiers: Sequence[rules.PriceTier] = rules.DEFAULT_TIERS,
    now: datetime | None = None,
    limit: int = 10,
) -> list[rules.Suggestion]:
    """Uploaded PPV content the fan can still get (not received, no near-copy received), ranked."""
    if not KEY_RE.match(fan_id or ""):
        raise Invalid(f"not a fan id: {fan_id!r}")
    now = now or utcnow()
    offerable, history, bought, spend = await asyncio.gather(
        reads.offerable(creator, platform, fan_id=fan_id, now=now, top=limit),
        reads.history(creator, platform, fan_id),
        reads.bought(creator, platform, fan_id),
        reads.spend_cents(creator, platform, fan_id),
    )
    return rules.suggest(offerable, history, bought, spend_cents=spend, now=now, tiers=tiers, limit=limit)


# --------------------------------------------------------------------------- local purchases


class PurchaseOutbox(Protocol):
    async def message_sends(self, message_uuid: str) -> list[AttemptRow]: ...

    async def record(self, event: Envelope) -> None:
        """Into the outbox (the relay publishes it; the sales handler counts it)."""


async def simulate_purchase(store: PurchaseOutbox, message_uuid: str, *, now: datetime | None = None) -> Envelope:
    """On the local platform, the fan buys a PPV message: one sale.recorded (source local).
    The dedupe key is the message: simulating the same purchase twice records one sale."""
    rows = [r for r in await store.message_sends(message_uuid) if r.status == "sent"]
    if not rows:
        raise NotFound(f"no sent message {message_uuid}")
    first = rows[0]
    if first.platform != "local":
        raise Invalid(f"message {message_uuid} went out on {first.platform}; purchases there come from the platform")
    if not first.price_cents:
        raise Invalid(f"message {message_uuid} was free; there is nothing to buy")
    key = f"local:purchase:{message_uuid}"
    event = new_event(
        "sale.recorded",
        creator=first.creator,
        key=str(uuid.uuid5(NAMESPACE, f"sale:{first.creator}:{key}")),
        event_id=uuid.uuid5(NAMESPACE, f"event:{first.creator}:{key}"),
        payload={
            "dedupe_key": key,
            "kind": "purchase",
            "gross_cents": first.price_cents,
            "platform": "local",
            "source": "local",
            "sold_at": now or utcnow(),
            "fan_id": first.fan_id,
            "message_uuid": message_uuid,
            "content_id": first.content_id,
        },
    )
    await store.record(event)
    return event
