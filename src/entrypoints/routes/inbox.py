"""The inbox API (/api/inbox*) and page (/inbox): fan conversations, reply drafts, approve
(send), edit, discard. Everything goes through handlers/inbox.py, the same use cases as
`vaultline inbox`; POST /api/inbox/{fan}/send is a person's approval and the only HTTP route
that sends a chat message."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from vaultline.bootstrap import chat_sender, platform_names
from vaultline.bootstrap import inbox_ports as build_inbox_ports
from vaultline.entrypoints.admin import Services, services
from vaultline.entrypoints.pages import page
from vaultline.handlers import inbox

router = APIRouter(tags=["inbox"])


def inbox_ports(svc: Services) -> inbox.InboxPorts:
    return build_inbox_ports(svc.settings, svc.pool, platform_names(svc.platforms))
APPROVER = "admin"  # one shared admin token: the API cannot tell people apart

ERRORS = {400: {"description": "invalid request"}, 404: {"description": "no such conversation"},
          409: {"description": "already answered, or the send guard refused the offer"}}  # fmt: skip
CreatorQ = Annotated[str | None, Query(description="The persona (needed when the fan talks to several)")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationOut(_Out):
    creator: str
    fan_id: str
    display_name: str | None
    unanswered: bool
    status: str | None
    spend_cents: int
    last_message_at: datetime | None
    last_text: str
    waiting_since: datetime | None


class LineOut(_Out):
    direction: Literal["in", "out"]
    text: str
    sent_at: datetime | None
    price_cents: int | None


class DraftOut(_Out):
    n: int
    text: str


class InboxOfferOut(_Out):
    content_id: uuid.UUID
    price_cents: int
    category: str | None = None
    description: str | None = None
    cropped_key: str | None = None
    original_filename: str | None = None
    thumb: str


class ReplyTimesOut(_Out):
    last: int | None
    average: int | None
    count: int


class ConversationDetailOut(_Out):
    creator: str
    fan_id: str
    display_name: str | None
    spend_cents: int
    last_purchase_at: datetime | None
    categories_bought: list[str]
    received: list[uuid.UUID]
    history: list[LineOut]
    suggestion_id: int | None
    status: str | None
    open: bool
    reason: str | None
    flags: list[str]
    drafts: list[DraftOut]
    drafts_are_templates: bool
    offer: InboxOfferOut | None
    model: str | None
    attempts: int
    waiting_since: datetime | None
    reply_seconds: ReplyTimesOut


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    draft: int | None = Field(default=None, ge=1, description="Draft number (1-based); omit to send typed text")
    text: str | None = Field(default=None, max_length=inbox.MAX_TEXT, description="The edited or typed reply")
    with_offer: bool = Field(default=True, description="Send the suggested PPV offer with it")
    creator: str | None = None


class ReplySentOut(_Out):
    creator: str
    fan_id: str
    platform: str
    message_uuid: str
    text: str
    draft: int | None
    template: bool
    edited: bool
    offer: dict[str, str | int] | None
    reply_seconds: int | None
    approved_by: str


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    creator: str | None = None


class DiscardedOut(_Out):
    creator: str
    fan_id: str
    discarded_by: str
    suggestion_id: int


@router.get("/api/inbox", response_model=list[ConversationOut], summary="Conversations: unanswered first, then by spend")
async def list_conversations(svc: Annotated[Services, Depends(services)], creator: CreatorQ = None) -> list[dict]:
    return await inbox.list_conversations(inbox_ports(svc), creator)


@router.get("/api/inbox/{fan_id}", response_model=ConversationDetailOut, responses=ERRORS,
            summary="One conversation: history, spend, drafts (numbered from 1), offer, flags")  # fmt: skip
async def show(fan_id: str, svc: Annotated[Services, Depends(services)], creator: CreatorQ = None) -> dict:
    got = await inbox.show(inbox_ports(svc), fan_id, creator)
    if got["offer"]:
        got["offer"]["thumb"] = f"/api/content/{got['offer']['content_id']}/image?variant=thumb"
    return got


@router.post("/api/inbox/{fan_id}/send", response_model=ReplySentOut, responses=ERRORS,
             summary="Approve draft N (edited or not) or typed text: sends it to the fan")  # fmt: skip
async def send(fan_id: str, body: ReplyIn, svc: Annotated[Services, Depends(services)]) -> dict:
    return await inbox.send(
        inbox_ports(svc), chat_sender(svc.pool, svc.platforms), fan_id,
        draft=body.draft, edit=body.text, approved_by=APPROVER, creator=body.creator, with_offer=body.with_offer,
    )  # fmt: skip


@router.post("/api/inbox/{fan_id}/discard", response_model=DiscardedOut, responses=ERRORS,
             summary="Discard the drafts: nothing is sent, the decision is recorded")  # fmt: skip
async def discard(fan_id: str, svc: Annotated[Services, Depends(services)], body: DiscardIn | None = None) -> dict:
    return await inbox.discard(inbox_ports(svc), fan_id, by=APPROVER,
                               creator=body.creator if body else None)  # fmt: skip


INBOX_BODY = """
<main class="inbox">
  <section class="inbox-list" aria-label="Conversations">
    <header><h1>Inbox</h1><button type="button" id="refresh">Refresh</button></header>
    <p id="summary" class="stages" aria-live="polite">loading…</p>
    <ul id="conversations"></ul>
  </section>
  <section id="conversation" class="inbox-conv" aria-label="Conversation" hidden>
    <header>
      <h2 id="fan-name"></h2>
      <p id="fan-facts" class="stages"></p>
    </header>
    <ol id="history" class="history"></ol>
    <p id="status" class="notice" role="status" aria-live="polite"></p>
    <ul id="flags" class="flags"></ul>
    <h3 id="drafts-title">Drafts</h3>
    <ol id="drafts" class="drafts"></ol>
    <div id="offer" class="offer" hidden>
      <img id="offer-thumb" alt="offered content" width="120">
      <p><span id="offer-price"></span> <span id="offer-what"></span></p>
      <label><input type="checkbox" id="offer-include" checked> send this offer with the reply</label>
    </div>
    <label for="reply">Reply (edit before sending)</label>
    <textarea id="reply" rows="4" maxlength="5000"></textarea>
    <p class="actions">
      <button type="button" id="send" class="approve">Send</button>
      <button type="button" id="discard" class="reject">Discard</button>
    </p>
    <p id="result" class="notice" role="status" aria-live="polite"></p>
  </section>
</main>
"""


@router.get("/inbox", include_in_schema=False)
async def inbox_page() -> Response:
    return page("vaultline — inbox", INBOX_BODY, scripts=("inbox.js",), styles=("review.css", "inbox.css"),
                active="inbox")  # fmt: skip
