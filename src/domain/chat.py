"""Fan chat: the persona, the context a model gets, the answer it must give, and what is done
with that answer before a person sees it. Pure: no I/O, no clock unless passed in.

Nothing here sends anything. Drafts are suggestions; only a person's approval in the inbox
sends (handlers/inbox.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vaultline.domain.guardrails import Flag, check_draft
from vaultline.domain.retry import TransientError

HISTORY_WINDOW = 20  # last N messages of the conversation the model sees
MAX_DRAFTS = 3
DRAFT_MAX_CHARS = 1000
# The model may move an offer's price, within reason; outside this band the catalogue price wins.
PRICE_BAND = (0.5, 2.0)

SuggestionStatus = Literal["pending", "ready", "failed", "flagged"]
# After a person acts: sending (claimed, platform call in flight), sent, discarded, superseded
# (an older suggestion of a conversation that got answered).
OPEN_STATUSES: tuple[str, ...] = ("pending", "ready", "failed", "flagged")


class Persona(BaseModel):
    """Who writes: `[creators.<slug>.persona]` in vaultline.toml, or a TOML file it points to."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    voice: str = "warm, playful and flirty, short messages, never pushy"
    boundaries: list[str] = Field(default_factory=list)
    language: str = "English"
    disclose_ai: bool = True
    file: str | None = None  # path of a TOML file with these keys (relative to vaultline.toml)


class ModelUnavailable(TransientError):
    """The model could not be asked (down, slow, overloaded, model not pulled): try later."""


class ModelAnswerInvalid(Exception):
    """The model answered, twice, with something that is not the required JSON."""


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class ChatLine:
    direction: Literal["in", "out"]
    text: str
    sent_at: datetime | None = None
    price_cents: int | None = None


@dataclass(frozen=True)
class FanProfile:
    fan_id: str
    display_name: str | None = None
    spend_cents: int = 0
    last_purchase_at: datetime | None = None
    categories_bought: tuple[str, ...] = ()
    received: tuple[uuid.UUID, ...] = ()  # content ids the fan already has


@dataclass(frozen=True)
class OfferCandidate:
    """Uploaded PPV content the fan may be offered (not received, no near-copy received)."""

    content_id: uuid.UUID
    price_cents: int
    category: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    media_uuid: str | None = None


# --------------------------------------------------------------------------- the model's answer

DraftText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=DRAFT_MAX_CHARS)]


class ModelOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_id: uuid.UUID
    price_cents: int = Field(ge=0)


class ModelAnswer(BaseModel):
    """The structured output the model must produce; its JSON schema is Ollama's `format`."""

    model_config = ConfigDict(extra="forbid")
    drafts: list[DraftText] = Field(min_length=1, max_length=MAX_DRAFTS)
    offer: ModelOffer | None = None


def answer_schema() -> dict[str, Any]:
    return ModelAnswer.model_json_schema()


# --------------------------------------------------------------------------- prompt


def _money(cents: int) -> str:
    return f"${cents / 100:.2f}"


def build_messages(
    persona: Persona,
    *,
    creator: str,
    history: list[ChatLine],
    profile: FanProfile,
    offer: OfferCandidate | None,
    window: int = HISTORY_WINDOW,
) -> list[dict[str, str]]:
    """The chat for the model: one system message (persona, rules, fan, offer, output format)
    and the last `window` messages of the conversation (fan = user, persona = assistant)."""
    name = persona.name or creator
    rules = [
        f"You write chat replies as {name}, a creator on a subscription platform, to one fan.",
        f"Voice: {persona.voice}.",
        f"Write in {persona.language}.",
        "A person reviews every reply before it is sent; write drafts they can send as they are.",
        f"Give 1 to {MAX_DRAFTS} different short drafts.",
        "Never share or ask for contact details, social media, phone numbers, e-mail or links.",
        "Never suggest paying or talking outside the platform, and never agree to meet in person.",
    ]
    if persona.disclose_ai:
        rules.append(
            f"{name} is an AI persona. Never claim to be a real human; if asked, say honestly that you are an AI."
        )
    for b in persona.boundaries:
        rules.append(f"Boundary: {b}")

    fan = [f"Fan id: {profile.fan_id}" + (f" ({profile.display_name})" if profile.display_name else "")]
    fan.append(f"Total spent: {_money(profile.spend_cents)}")
    if profile.last_purchase_at:
        fan.append(f"Last purchase: {profile.last_purchase_at.date().isoformat()}")
    if profile.categories_bought:
        fan.append("Likes (categories bought): " + ", ".join(profile.categories_bought))
    fan.append(f"Already has {len(profile.received)} of {name}'s paid items")

    if offer is not None:
        desc = "; ".join(
            x for x in (offer.category and f"category {offer.category}", offer.description,
                        offer.tags and "tags " + ", ".join(offer.tags)) if x
        )  # fmt: skip
        offer_text = (
            "You may offer this one paid item if it fits the conversation (at most one offer): "
            f"content_id {offer.content_id}, price_cents {offer.price_cents}"
            + (f" ({desc})" if desc else "")
            + ". Mention it naturally in a draft and put it in `offer`; otherwise set `offer` to null."
        )
    else:
        offer_text = "Do not offer anything for sale in this reply: set `offer` to null."

    output = (
        'Answer only with JSON: {"drafts": ["...", ...], "offer": {"content_id": "...", "price_cents": N} or null}.'
    )
    system = "\n".join([*rules, "", "About the fan:", *fan, "", offer_text, output])
    messages: list[dict[str, str]] = [{"role": "system", "content": system}]
    for line in history[-window:] if window > 0 else []:
        messages.append({"role": "user" if line.direction == "in" else "assistant", "content": line.text})
    return messages


def retry_instruction(error: str) -> dict[str, str]:
    """Told to the model after an answer that did not validate (the one retry)."""
    return {
        "role": "user",
        "content": "Your last answer was not valid JSON for the required schema "
        f"({error[:300]}). Answer again with only the JSON object.",
    }


# --------------------------------------------------------------------------- after the model


@dataclass
class ReviewedAnswer:
    drafts: list[str]
    offer: ModelOffer | None
    rejected: list[str] = field(default_factory=list)  # "draft 2 rejected: reason" lines
    offer_dropped: str | None = None

    @property
    def usable(self) -> bool:
        return bool(self.drafts)


def review_answer(
    answer: ModelAnswer, *, eligible: list[OfferCandidate], disclose_ai: bool, allow_offer: bool = True
) -> ReviewedAnswer:
    """Reject drafts the guardrails refuse; keep the offer only if it names eligible content
    (the price stays within PRICE_BAND of the catalogue price, else the catalogue price)."""
    drafts: list[str] = []
    rejected: list[str] = []
    for n, text in enumerate(answer.drafts, start=1):
        flags: list[Flag] = check_draft(text, disclose_ai=disclose_ai)
        if flags:
            rejected.append(f"draft {n} rejected: " + "; ".join(f.describe() for f in flags))
        else:
            drafts.append(text)
    offer, dropped = answer.offer, None
    if offer is not None:
        by_id = {c.content_id: c for c in eligible}
        candidate = by_id.get(offer.content_id)
        if not allow_offer:
            offer, dropped = None, "no offers in a flagged conversation"
        elif candidate is None:
            offer, dropped = None, f"offer of {offer.content_id} dropped: not eligible for this fan"
        else:
            lo, hi = (int(candidate.price_cents * f) for f in PRICE_BAND)
            if not (lo <= offer.price_cents <= hi) or offer.price_cents == 0:
                offer = ModelOffer(content_id=candidate.content_id, price_cents=candidate.price_cents)
    if not drafts and offer is not None:
        offer, dropped = None, "offer dropped: no acceptable draft to carry it"
    return ReviewedAnswer(drafts=drafts, offer=offer, rejected=rejected, offer_dropped=dropped)


# --------------------------------------------------------------------------- inbox ordering


@dataclass(frozen=True)
class ConversationSummary:
    creator: str
    fan_id: str
    unanswered: bool
    spend_cents: int
    last_message_at: datetime | None
    last_text: str = ""
    suggestion_status: str | None = None
    display_name: str | None = None
    waiting_since: datetime | None = None


def inbox_order(conversations: list[ConversationSummary]) -> list[ConversationSummary]:
    """Unanswered first, then by fan value (spend), then the most recent message first."""

    def key(c: ConversationSummary) -> tuple[int, int, float]:
        ts = c.last_message_at.timestamp() if c.last_message_at else 0.0
        return (0 if c.unanswered else 1, -c.spend_cents, -ts)

    return sorted(conversations, key=key)


def reply_seconds(waiting_since: datetime | None, sent_at: datetime) -> int | None:
    """Time to reply: from the oldest unanswered fan message to the approved reply."""
    if waiting_since is None:
        return None
    return max(0, int((sent_at - waiting_since).total_seconds()))


def drafts_for_inbox(status: str | None, drafts: list[str], templates: list[str]) -> tuple[list[str], bool]:
    """What the inbox numbers from 1: the model's drafts when ready, the creator's template
    replies while the model is pending or failed. Returns (texts, are_templates)."""
    if status == "ready" and drafts:
        return list(drafts), False
    if status in ("pending", "failed"):
        return list(templates), True
    return list(drafts), False



# --------------------------------------------------------------------------- stored state


@dataclass(frozen=True)
class Suggestion:
    """One suggestion set (for one received message), as stored."""

    id: int
    creator: str
    fan_id: str
    message_id: int
    message_event_id: uuid.UUID
    status: str
    drafts: tuple[str, ...] = ()
    offer: ModelOffer | None = None
    flags: tuple[str, ...] = ()
    reason: str | None = None
    model: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    approved_by: str | None = None
    sent_draft: int | None = None
    edited: bool | None = None
    discarded_by: str | None = None
    reply_seconds: int | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    creator: str
    fan_id: str
    platform: str
    message_uuid: str
    text: str
    sent_at: datetime
    media_uuids: tuple[str, ...] = ()
    content_ids: tuple[uuid.UUID, ...] = ()
    price_cents: int | None = None
    sent_by: str | None = None
