"""Fans, sends and sales over HTTP, and the Fans page (contract: /api/fans*, /api/sends,
/api/sales, /fans).

Sending goes through handlers/sends.py (the guard, the reservation before the platform call,
exactly once); a refusal is a 409 whose message names the earlier send. Reads come from
adapters/db/sales.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from vaultline.adapters import metrics
from vaultline.adapters.db import sales as q
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.domain.errors import Conflict, Invalid, NotFound
from vaultline.entrypoints.admin import Services, services
from vaultline.entrypoints.pages import page
from vaultline.events import FanId
from vaultline.handlers import sends

router = APIRouter(tags=["fans"])
SENT_BY = "admin"
ERRORS = {400: {"description": "bad input"}, 404: {"description": "no such fan or content"}}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FanOut(_Out):
    creator: str
    platform: str
    fan_id: str
    handle: str | None
    display_name: str | None
    first_seen_at: datetime | None
    last_message_at: datetime | None
    lifetime_spend_cents: int
    purchases: int
    last_purchase_at: datetime | None
    followed_at: datetime | None
    subscribed_at: datetime | None
    tags: list[str]
    notes: str | None
    received: int = 0


class ReceivedOut(_Out):
    send_id: uuid.UUID
    content_id: uuid.UUID
    status: str
    message_uuid: str | None
    price_cents: int | None
    text: str | None
    forced: bool
    reason: str | None
    reserved_at: datetime
    sent_at: datetime | None
    purchased_at: datetime | None
    bought: bool
    error: str | None
    original_filename: str | None
    category: str | None
    tags: list[str]
    thumb: str


class FanDetail(_Out):
    fan: FanOut
    received: list[ReceivedOut]


class OfferOut(_Out):
    content_id: uuid.UUID
    price_cents: int
    score: float
    reasons: list[str]
    thumb: str


class OffersOut(_Out):
    fan_id: str
    creator: str
    platform: str
    offers: list[OfferOut]


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fan_id: FanId
    content_ids: list[uuid.UUID] = Field(min_length=1, max_length=sends.MAX_CONTENTS)
    creator: str | None = None
    price_cents: int | None = Field(default=None, ge=0)
    text: str | None = Field(default=None, max_length=5000)
    force: bool = False
    reason: str | None = Field(default=None, max_length=500)


class SendOut(_Out):
    status: str
    fan_id: str
    platform: str
    content_ids: list[uuid.UUID]
    attempt_id: uuid.UUID
    message_uuid: str | None
    price_cents: int | None
    forced: bool
    reason: str | None
    reconciled: bool
    event_ids: list[uuid.UUID]


class SaleOut(_Out):
    id: uuid.UUID
    creator: str
    platform: str
    kind: str
    gross_cents: int
    net_cents: int | None
    currency: str
    fan_id: str | None
    route_uuid: str | None
    message_uuid: str | None
    post_uuid: str | None
    occurred_at: datetime
    source: str
    sources: list[str]
    matched_send_id: uuid.UUID | None
    matched_content_id: uuid.UUID | None
    matched_message_uuid: str | None
    dedupe_key: str


def thumb(content_id: uuid.UUID) -> str:
    return f"/api/content/{content_id}/image?variant=thumb"


def _fan(row: dict) -> FanOut:
    return FanOut(**{k: row.get(k) for k in FanOut.model_fields if k in row})


def _creator(svc: Services, creator: str | None) -> str:
    slug = creator or svc.settings.default_creator
    try:
        svc.settings.creator(slug)
    except ValueError as e:
        raise Invalid(str(e)) from None
    return slug


async def _fan_or_404(svc: Services, fan_id: str, creator: str | None) -> dict:
    row = await q.get_fan(svc.pool, fan_id, creator)
    if row is None:
        raise NotFound(f"no fan {fan_id}" + (f" for {creator}" if creator else ""))
    return row


@router.get("/api/fans", response_model=list[FanOut], summary="Fans by lifetime spend")
async def list_fans(
    creator: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200, svc: Services = Depends(services)
) -> list[FanOut]:
    return [_fan(r) for r in await q.list_fans(svc.pool, creator, limit)]


@router.get("/api/fans/{fan_id}", response_model=FanDetail, responses=ERRORS,
            summary="One fan and every image they received (price, bought or not)")  # fmt: skip
async def fan_detail(fan_id: str, creator: str | None = None, svc: Services = Depends(services)) -> FanDetail:
    f = await _fan_or_404(svc, fan_id, creator)
    rows = await q.fan_sends(svc.pool, f["creator"], f["platform"], f["fan_id"])
    received = [
        ReceivedOut(
            send_id=r["id"], content_id=r["content_id"], status=r["status"], message_uuid=r["message_uuid"],
            price_cents=r["price_cents"], text=r["text"], forced=r["forced"], reason=r["reason"],
            reserved_at=r["reserved_at"], sent_at=r["sent_at"], purchased_at=r["purchased_at"],
            bought=r["purchased_at"] is not None, error=r["error"], original_filename=r["original_filename"],
            category=r["category"], tags=list(r["tags"] or []), thumb=thumb(r["content_id"]),
        )  # fmt: skip
        for r in rows
    ]
    return FanDetail(fan=_fan(f), received=received)


@router.get("/api/fans/{fan_id}/offers", response_model=OffersOut, responses=ERRORS,
            summary="Uploaded PPV content the fan can still get (suggest-ppv), best first, priced by spend tier")  # fmt: skip
async def offers(
    fan_id: str, creator: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 24,
    svc: Services = Depends(services),
) -> OffersOut:  # fmt: skip
    slug = _creator(svc, creator)
    platform = (await svc.platforms(slug)).name
    found = await sends.suggest_ppv(
        q.PostgresSendReads(svc.pool), creator=slug, platform=platform, fan_id=fan_id,
        tiers=svc.settings.creator(slug).price_tiers(), limit=limit,
    )  # fmt: skip
    return OffersOut(
        fan_id=fan_id, creator=slug, platform=platform,
        offers=[OfferOut(content_id=s.content_id, price_cents=s.price_cents, score=s.score, reasons=list(s.reasons),
                         thumb=thumb(s.content_id)) for s in found],
    )  # fmt: skip


@router.post("/api/sends", response_model=SendOut, status_code=201,
             responses={**ERRORS, 409: {"description": "the fan already has it (or a near-copy); the earlier send is named"}},
             summary="Send content to a fan, exactly once")  # fmt: skip
async def send(body: SendIn, svc: Services = Depends(services)) -> SendOut:
    slug = _creator(svc, body.creator)
    req = sends.SendRequest(
        creator=slug, fan_id=body.fan_id, content_ids=tuple(body.content_ids), price_cents=body.price_cents,
        text=body.text, force=body.force, reason=body.reason, sent_by=SENT_BY,
    )  # fmt: skip
    try:
        result = await sends.send(req, store=PostgresSendStore(svc.pool), platform=await svc.platforms(slug))
    except Conflict:
        metrics.observe_send("refused")  # the duplicate guard said no
        raise
    if result.status != "sent":  # sent ones are counted from media.sent by the analytics consumer
        metrics.observe_send(result.status)
    return SendOut(**result.__dict__)


@router.get("/api/sales", response_model=list[SaleOut], summary="Sales, newest first, each counted once")
async def list_sales(
    unmatched: bool = False, creator: str | None = None, limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    svc: Services = Depends(services),
) -> list[SaleOut]:  # fmt: skip
    rows = await q.list_sales(svc.pool, unmatched=unmatched, creator=creator, limit=limit)
    return [SaleOut(**{k: r[k] for k in SaleOut.model_fields}) for r in rows]


# --------------------------------------------------------------------------- the page

FANS_BODY = """
<header class="topbar"><h1>vaultline <span>fans</span></h1>
  <p id="fans-summary" class="stages" aria-live="polite">loading…</p></header>
<p id="notice" class="notice" role="status" aria-live="polite"></p>
<main id="fans-main">
  <section id="fan-list" aria-label="Fans by spend">
    <table class="fans"><thead><tr><th>Fan</th><th>Handle</th><th>Creator</th><th>Spent</th><th>Purchases</th>
      <th>Received</th><th>Last message</th></tr></thead><tbody id="fan-rows"></tbody></table>
    <p id="fans-empty" class="empty" hidden>No fans yet. They appear when you send to one, or when the platform tells us about them.</p>
  </section>
  <section id="fan-page" hidden aria-label="One fan">
    <p><a href="/fans" id="back">← all fans</a></p>
    <h2 id="fan-title"></h2>
    <p id="fan-facts" class="facts"></p>
    <h3>Received</h3>
    <div id="received" class="grid fan-grid" aria-label="Images this fan received"></div>
    <p id="received-empty" class="empty" hidden>Nothing sent to this fan yet.</p>
    <h3>What they can still get</h3>
    <form id="send-form" class="send-form">
      <label>Price $ <input id="send-price" type="text" inputmode="decimal" size="6"></label>
      <label>Text <input id="send-text" type="text" maxlength="5000" size="40"></label>
      <button type="submit" id="send-button" disabled>Send selected</button>
      <span id="send-msg" role="status" aria-live="polite"></span>
    </form>
    <div id="offers" class="grid fan-grid" aria-label="Content this fan can still get"></div>
    <p id="offers-empty" class="empty" hidden>Nothing left to offer: every uploaded PPV image (or a near-copy) went to this fan.</p>
  </section>
</main>
"""


@router.get("/fans", include_in_schema=False)
async def fans_page() -> Response:
    return page("vaultline — fans", FANS_BODY, scripts=("fans.js",), styles=("review.css", "fans.css"), active="fans")
