"""The inbox: a person reads conversations and approves, edits or discards reply drafts.

Shared by the CLI (`vaultline inbox ...`) and the admin API/page. `send` is the ONLY code path
in vaultline that sends a chat message to a platform, and only on a person's explicit action:
the chat handler drafts, it cannot send.

send: claim the open suggestion (a second click is a Conflict, never a second message), check
the final text with the guardrails, send through the ChatSender (an offer goes through the
send guard; a refusal is a Conflict and nothing is sent), then one transaction records the
outgoing message, the suggestion as sent (who, which draft, edited or not, time to reply) and
message.sent in the outbox. A platform failure releases the claim."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from vaultline.domain.chat import (
    OPEN_STATUSES,
    ConversationSummary,
    OutgoingMessage,
    Suggestion,
    drafts_for_inbox,
    inbox_order,
    reply_seconds,
)
from vaultline.domain.errors import Conflict, Invalid, NotFound
from vaultline.domain.guardrails import check_draft
from vaultline.events import MessageSent, PpvOffer, ReplyDiscarded, derived_id, new_event, utcnow
from vaultline.handlers.ports import ChatSender, ChatStore, FanProfiles

log = structlog.get_logger("vaultline.inbox")
HISTORY_SHOWN = 50
MAX_TEXT = 5000


@dataclass
class InboxPorts:
    store: ChatStore
    profiles: FanProfiles
    creator_config: Callable[[str], Any]  # slug -> settings.CreatorConfig (templates, persona)
    content: Callable[[uuid.UUID], Awaitable[dict[str, Any] | None]] | None = None  # offer details


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


async def _creator_for(store: ChatStore, fan_id: str, creator: str | None) -> str:
    if creator:
        return creator
    creators = await store.creators_of(fan_id)
    if not creators:
        raise NotFound(f"no conversation with fan {fan_id}")
    if len(creators) > 1:
        raise Invalid(f"fan {fan_id} talks to several creators ({', '.join(creators)}): name one with --creator")
    return creators[0]


def summary_json(c: ConversationSummary) -> dict[str, Any]:
    return {
        "creator": c.creator, "fan_id": c.fan_id, "display_name": c.display_name, "unanswered": c.unanswered,
        "status": c.suggestion_status, "spend_cents": c.spend_cents, "last_message_at": _iso(c.last_message_at),
        "last_text": c.last_text, "waiting_since": _iso(c.waiting_since),
    }  # fmt: skip


async def list_conversations(ports: InboxPorts, creator: str | None = None) -> list[dict[str, Any]]:
    """Unanswered first, then by fan value (spend), then the most recent."""
    convs = await ports.store.conversations(creator)
    spend: dict[tuple[str, str], int] = {}
    for slug in {c.creator for c in convs}:
        got = await ports.profiles.spend(slug, [c.fan_id for c in convs if c.creator == slug])
        spend.update({(slug, f): v for f, v in got.items()})
    convs = [replace(c, spend_cents=spend.get((c.creator, c.fan_id), 0)) for c in convs]
    return [summary_json(c) for c in inbox_order(convs)]


async def _offer_json(ports: InboxPorts, s: Suggestion) -> dict[str, Any] | None:
    if s.offer is None:
        return None
    info: dict[str, Any] = {"content_id": str(s.offer.content_id), "price_cents": s.offer.price_cents}
    if ports.content is not None:
        row = await ports.content(s.offer.content_id) or {}
        info.update({k: row.get(k) for k in ("category", "description", "cropped_key", "original_filename")})
    return info


async def show(ports: InboxPorts, fan_id: str, creator: str | None = None) -> dict[str, Any]:
    creator = await _creator_for(ports.store, fan_id, creator)
    store = ports.store
    history = await store.history(creator, fan_id, limit=HISTORY_SHOWN)
    if not history:
        raise NotFound(f"no conversation with fan {fan_id} for creator {creator}")
    profile = await ports.profiles.profile(creator, fan_id)
    spend = (await ports.profiles.spend(creator, [fan_id])).get(fan_id, profile.spend_cents)
    s = await store.latest_suggestion(creator, fan_id)
    config = ports.creator_config(creator)
    open_ = s is not None and s.status in OPEN_STATUSES
    texts, templates = drafts_for_inbox(s.status if s else None, list(s.drafts) if s else [], config.templates)
    times = await store.reply_times(creator, fan_id)
    return {
        "creator": creator,
        "fan_id": fan_id,
        "display_name": profile.display_name,
        "spend_cents": spend,
        "last_purchase_at": _iso(profile.last_purchase_at),
        "categories_bought": list(profile.categories_bought),
        "received": [str(c) for c in profile.received],
        "history": [
            {"direction": m.direction, "text": m.text, "sent_at": _iso(m.sent_at), "price_cents": m.price_cents}
            for m in history
        ],
        "suggestion_id": s.id if s else None,
        "status": s.status if s else None,
        "open": open_,
        "reason": s.reason if s else None,
        "flags": list(s.flags) if s else [],
        "drafts": [{"n": n, "text": t} for n, t in enumerate(texts if open_ else [], start=1)],
        "drafts_are_templates": templates and open_,
        "offer": await _offer_json(ports, s) if s and open_ and s.status == "ready" else None,
        "model": s.model if s else None,
        "attempts": s.attempts if s else 0,
        "waiting_since": _iso(await store.waiting_since(creator, fan_id)),
        "reply_seconds": {"last": times[-1] if times else None,
                          "average": round(sum(times) / len(times)) if times else None, "count": len(times)},
    }  # fmt: skip


async def _open_suggestion(store: ChatStore, creator: str, fan_id: str) -> Suggestion:
    s = await store.latest_suggestion(creator, fan_id)
    if s is None:
        raise NotFound(f"nothing to answer for fan {fan_id}")
    if s.status == "sending":
        raise Conflict(f"a reply to fan {fan_id} is being sent right now")
    if s.status not in OPEN_STATUSES:
        raise Conflict(f"the last message of fan {fan_id} is already {s.status}")
    return s


async def send(
    ports: InboxPorts,
    sender: ChatSender,
    fan_id: str,
    *,
    draft: int | None,
    edit: str | None = None,
    approved_by: str,
    creator: str | None = None,
    with_offer: bool = True,
) -> dict[str, Any]:
    """A person approves draft N (as is, or edited to `edit`), or types `edit` by hand."""
    creator = await _creator_for(ports.store, fan_id, creator)
    store = ports.store
    s = await _open_suggestion(store, creator, fan_id)
    config = ports.creator_config(creator)
    texts, templates = drafts_for_inbox(s.status, list(s.drafts), config.templates)
    if draft is None and edit is None:
        raise Invalid("choose a draft (--draft N) or type the reply (--edit TEXT)")
    if draft is not None and not 1 <= draft <= len(texts):
        raise Invalid(f"draft {draft} does not exist: fan {fan_id} has {len(texts)} draft(s)")
    original = texts[draft - 1] if draft is not None else None
    text = (edit if edit is not None else original or "").strip()
    if not text:
        raise Invalid("the reply is empty")
    if len(text) > MAX_TEXT:
        raise Invalid(f"the reply is longer than {MAX_TEXT} characters")
    refused = check_draft(text, disclose_ai=config.persona.disclose_ai)
    if refused:
        raise Invalid("refused by the guardrails: " + "; ".join(f.describe() for f in refused))
    edited = original is None or text != original.strip()
    offer = None
    if with_offer and s.status == "ready" and s.offer is not None and not templates:
        offer = PpvOffer(content_id=s.offer.content_id, price_cents=s.offer.price_cents)

    previous = await store.claim(s.id)
    if previous is None:
        raise Conflict(f"the last message of fan {fan_id} was answered meanwhile")
    try:
        sent = await sender.send(creator, fan_id, text, offer=offer, sent_by=approved_by)
    except BaseException:
        await store.release(s.id, previous)
        raise
    now = utcnow()
    seconds = reply_seconds(await store.waiting_since(creator, fan_id), now)
    payload = MessageSent(
        platform=sent.platform, fan_id=fan_id, message_uuid=sent.message_uuid, text=text, approved_by=approved_by,
        suggestion_event_id=s.message_event_id, draft=None if templates else draft, edited=edited, offer=offer,
        media_uuids=list(sent.media_uuids), reply_seconds=seconds,
    )  # fmt: skip
    event = new_event("message.sent", creator=creator, key=fan_id, payload=payload,
                      event_id=derived_id(s.message_event_id, "message.sent"), occurred_at=now)  # fmt: skip
    message = OutgoingMessage(
        creator=creator, fan_id=fan_id, platform=sent.platform, message_uuid=sent.message_uuid, text=text,
        sent_at=now, media_uuids=sent.media_uuids, content_ids=(offer.content_id,) if offer else (),
        price_cents=offer.price_cents if offer else None, sent_by=approved_by,
    )  # fmt: skip
    try:
        await store.record_sent(s.id, message, draft=payload.draft, edited=edited, reply_seconds=seconds, event=event)
    except Exception:
        # The platform has the message; only our record failed. Leave the claim (status
        # `sending`) so nobody sends it again, and say so loudly.
        log.exception("chat message sent but not recorded", fan=fan_id, message_uuid=sent.message_uuid)
        raise
    log.info("chat reply sent", creator=creator, fan=fan_id, draft=draft, edited=edited, offer=bool(offer))
    return {
        "creator": creator, "fan_id": fan_id, "platform": sent.platform, "message_uuid": sent.message_uuid,
        "text": text, "draft": draft, "template": templates and draft is not None, "edited": edited,
        "offer": {"content_id": str(offer.content_id), "price_cents": offer.price_cents} if offer else None,
        "reply_seconds": seconds, "approved_by": approved_by,
    }  # fmt: skip


async def discard(ports: InboxPorts, fan_id: str, *, by: str, creator: str | None = None) -> dict[str, Any]:
    creator = await _creator_for(ports.store, fan_id, creator)
    s = await _open_suggestion(ports.store, creator, fan_id)
    event = new_event(
        "reply.discarded", creator=creator, key=fan_id,
        payload=ReplyDiscarded(fan_id=fan_id, suggestion_event_id=s.message_event_id, discarded_by=by),
        event_id=derived_id(s.message_event_id, "reply.discarded"),
    )  # fmt: skip
    if not await ports.store.discard(s.id, by=by, event=event):
        raise Conflict(f"the last message of fan {fan_id} was answered meanwhile")
    return {"creator": creator, "fan_id": fan_id, "discarded_by": by, "suggestion_id": s.id}
