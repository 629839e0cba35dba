"""chat: message.received -> reply.suggested. Drafts replies for a person; sends nothing.

This handler has no port that can send: ChatStore, Drafter, OfferSource and FanProfiles only.
Sending is the inbox's approval action (handlers/inbox.py).

Per received message, exactly one suggestion set (suggestions.message_id UNIQUE):
- the fan's message is checked by the guardrails first: a flagged conversation gets no
  drafts and no offer, only the reasons for a person (status `flagged`);
- otherwise the model is asked (persona, last N messages, fan profile, at most one offer);
  - unavailable (down, slow, not pulled): the suggestion stays `pending` with the reason and
    TransientError makes the bus redeliver with backoff; the last allowed delivery marks it
    `failed` instead of losing it to the dead letters;
  - malformed twice: `failed` with the reason;
  - drafts the guardrails reject are dropped (reasons kept); an offer of ineligible content
    is dropped; nothing usable left -> `failed`.
The final state, the processed_events row and reply.suggested (deterministic id) are one
transaction, so a redelivery after that changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from vaultline.domain.chat import (
    ModelAnswerInvalid,
    ModelUnavailable,
    Suggestion,
    build_messages,
    review_answer,
)
from vaultline.domain.guardrails import check_fan_message
from vaultline.domain.retry import PermanentError, TransientError
from vaultline.events import Envelope, MessageReceived, PpvOffer, ReplySuggested, new_event
from vaultline.handlers.heartbeat import DEFAULT_EVERY_S, Heartbeat, keep_alive
from vaultline.handlers.ports import ChatProjection, ChatStore, Drafter, FanProfiles, OfferSource

NAME = "chat"
log = structlog.get_logger("vaultline.chat")


@dataclass
class ChatPorts:
    store: ChatStore
    drafter: Drafter
    offers: OfferSource
    profiles: FanProfiles
    creator_config: Callable[[str], Any]  # slug -> settings.CreatorConfig (persona, chat_model)
    default_model: str
    history: int = 20


def suggested_event(cause: Envelope, s: Suggestion, *, discriminator: str = "") -> Envelope:
    offer = PpvOffer(content_id=s.offer.content_id, price_cents=s.offer.price_cents) if s.offer else None
    payload = ReplySuggested(
        message_event_id=cause.event_id, fan_id=s.fan_id, status=s.status, drafts=list(s.drafts),  # type: ignore[arg-type]
        offer=offer, flags=list(s.flags), reason=s.reason, model=s.model, attempts=s.attempts,
    )  # fmt: skip
    return new_event("reply.suggested", creator=cause.creator, key=s.fan_id, payload=payload, cause=cause,
                     discriminator=discriminator)  # fmt: skip


async def handle(
    event: Envelope,
    *,
    ports: ChatPorts,
    heartbeat: Heartbeat | None = None,
    heartbeat_every: float = DEFAULT_EVERY_S,
    final_attempt: bool = False,
) -> Suggestion:
    """The suggestion as it stands after this delivery (also when it was already done)."""
    p = event.payload
    if not isinstance(p, MessageReceived):
        raise PermanentError(f"chat handles message.received, not {event.type}")
    store = ports.store
    s = await store.receive(event)
    if s.status != "pending":
        return s  # done by an earlier delivery (or by the webhook/sync twin of this message)

    flags = check_fan_message(p.text)
    if flags:
        done = replace(s, status="flagged", drafts=(), offer=None, flags=tuple(f.describe() for f in flags),
                       reason="flagged for a person: no sales draft")  # fmt: skip
        await store.finish(done, handler=NAME, event=suggested_event(event, done))
        log.info("conversation flagged", fan=p.fan_id, flags=[f.code for f in flags])
        return done

    config = ports.creator_config(event.creator)
    model = config.chat_model or ports.default_model
    history, profile, eligible = await asyncio.gather(
        store.history(event.creator, p.fan_id, limit=ports.history, up_to=s.message_id),
        ports.profiles.profile(event.creator, p.fan_id),
        ports.offers.eligible(event.creator, p.fan_id),
    )
    messages = build_messages(config.persona, creator=event.creator, history=history, profile=profile,
                              offer=eligible[0] if eligible else None, window=ports.history)  # fmt: skip
    try:
        async with keep_alive(heartbeat, heartbeat_every):  # the model may take a while
            answer = await ports.drafter.draft(model, messages)
    except ModelUnavailable as e:
        reason = f"model unavailable: {e}"
        first = s.attempts == 0
        pending = replace(s, reason=reason, model=model, attempts=s.attempts + 1)
        attempts = await store.mark_pending(
            s.id, reason, event=suggested_event(event, pending, discriminator="pending") if first else None
        )
        if final_attempt:
            failed = replace(pending, status="failed", attempts=attempts,
                             reason=f"model unavailable after {attempts} attempts: {e}")  # fmt: skip
            await store.finish(failed, handler=NAME, event=suggested_event(event, failed))
            return failed
        raise TransientError(reason) from e
    except ModelAnswerInvalid as e:
        failed = replace(s, status="failed", reason=str(e), model=model, attempts=s.attempts + 1)
        await store.finish(failed, handler=NAME, event=suggested_event(event, failed))
        return failed

    reviewed = review_answer(answer, eligible=eligible, disclose_ai=config.persona.disclose_ai)
    notes = [*reviewed.rejected, *([reviewed.offer_dropped] if reviewed.offer_dropped else [])]
    if reviewed.usable:
        done = replace(s, status="ready", drafts=tuple(reviewed.drafts), offer=reviewed.offer, flags=tuple(notes),
                       reason=None, model=model, attempts=s.attempts + 1)  # fmt: skip
    else:
        done = replace(s, status="failed", drafts=(), offer=None, flags=tuple(notes), model=model,
                       reason="every draft was rejected by the guardrails", attempts=s.attempts + 1)  # fmt: skip
    await store.finish(done, handler=NAME, event=suggested_event(event, done))
    return done


# --------------------------------------------------------------------------- replay

# What writes each row live, and which recorded event a replay applies instead: the chat
# handler (message.received -> the message and its pending suggestion; reply.suggested -> the
# drafts, replayed as recorded: the model is never asked again) and the inbox (message.sent,
# reply.discarded -> a person's decision; nothing is sent again).
PROJECTED = ("message.received", "reply.suggested", "message.sent", "reply.discarded")


async def project(event: Envelope, *, store: ChatProjection) -> bool:
    """Apply one chat event to messages/suggestions; False when it was already applied."""
    apply = {
        "message.received": store.received, "reply.suggested": store.suggested,
        "message.sent": store.sent, "reply.discarded": store.discarded,
    }.get(event.type)  # fmt: skip
    return await apply(event) if apply is not None else False
