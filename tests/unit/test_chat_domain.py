"""Chat domain: prompt construction, the model's answer after review, inbox ordering."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from vaultline.domain.chat import (
    ChatLine,
    ConversationSummary,
    FanProfile,
    ModelAnswer,
    ModelOffer,
    OfferCandidate,
    Persona,
    answer_schema,
    build_messages,
    drafts_for_inbox,
    inbox_order,
    reply_seconds,
    review_answer,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
ELENA = Persona(name="Elena", voice="teasing, short", boundaries=["no feet content"], language="Spanish")
OFFER = OfferCandidate(uuid.UUID(int=1), 1299, category="lingerie", description="red set", tags=("red",))


def history(n: int) -> list[ChatLine]:
    return [ChatLine("in" if i % 2 == 0 else "out", f"m{i}", T0 + timedelta(minutes=i)) for i in range(n)]


def test_persona_rules_are_in_the_system_message():
    msgs = build_messages(ELENA, creator="elena", history=history(1), profile=FanProfile("f1"), offer=None)
    system = msgs[0]
    assert system["role"] == "system"
    for part in ("Elena", "teasing, short", "Spanish", "Boundary: no feet content", "Never claim to be a real human"):
        assert part in system["content"]


def test_persona_that_does_not_disclose_ai_gets_no_ai_rule():
    p = ELENA.model_copy(update={"disclose_ai": False})
    msgs = build_messages(p, creator="elena", history=[], profile=FanProfile("f1"), offer=None)
    assert "AI persona" not in msgs[0]["content"]


def test_unnamed_persona_speaks_as_the_creator_slug():
    msgs = build_messages(Persona(), creator="mila", history=[], profile=FanProfile("f1"), offer=None)
    assert "as mila" in msgs[0]["content"]


def test_history_window_keeps_the_last_n_in_order_with_roles():
    msgs = build_messages(ELENA, creator="elena", history=history(30), profile=FanProfile("f1"), offer=None, window=5)
    turns = msgs[1:]
    assert [m["content"] for m in turns] == ["m25", "m26", "m27", "m28", "m29"]
    assert [m["role"] for m in turns] == ["assistant", "user", "assistant", "user", "assistant"]


def test_fan_profile_is_described():
    profile = FanProfile("f1", display_name="Tom", spend_cents=12345, last_purchase_at=T0,
                         categories_bought=("lingerie", "beach"), received=(uuid.UUID(int=5), uuid.UUID(int=6)))
    system = build_messages(ELENA, creator="elena", history=[], profile=profile, offer=None)[0]["content"]
    assert "Tom" in system and "$123.45" in system and "2026-11-30" in system
    assert "lingerie, beach" in system and "Already has 2" in system


def test_at_most_one_offer_with_its_id_and_price():
    system = build_messages(ELENA, creator="elena", history=[], profile=FanProfile("f1"), offer=OFFER)[0]["content"]
    assert str(OFFER.content_id) in system and "price_cents 1299" in system and "red set" in system
    assert system.count("content_id ") == 1


def test_no_offer_says_so():
    system = build_messages(ELENA, creator="elena", history=[], profile=FanProfile("f1"), offer=None)[0]["content"]
    assert "Do not offer anything" in system


# --------------------------------------------------------------------------- the answer


def test_schema_allows_one_to_three_drafts_and_an_optional_offer():
    schema = answer_schema()
    assert schema["properties"]["drafts"]["minItems"] == 1
    assert schema["properties"]["drafts"]["maxItems"] == 3
    ModelAnswer.model_validate({"drafts": ["a"]})
    for bad in ({"drafts": []}, {"drafts": ["a"] * 4}, {"drafts": ["a"], "x": 1},
                {"drafts": ["a"], "offer": {"content_id": "nope", "price_cents": 1}}):  # fmt: skip
        with pytest.raises(ValidationError):
            ModelAnswer.model_validate(bad)


def test_offer_of_eligible_content_is_kept():
    a = ModelAnswer(drafts=["want a peek?"], offer=ModelOffer(content_id=OFFER.content_id, price_cents=1499))
    r = review_answer(a, eligible=[OFFER], disclose_ai=True)
    assert r.offer == ModelOffer(content_id=OFFER.content_id, price_cents=1499)
    assert r.offer_dropped is None


def test_offer_of_ineligible_content_is_dropped():
    a = ModelAnswer(drafts=["want a peek?"], offer=ModelOffer(content_id=uuid.UUID(int=99), price_cents=999))
    r = review_answer(a, eligible=[OFFER], disclose_ai=True)
    assert r.offer is None and "not eligible" in r.offer_dropped
    assert r.drafts == ["want a peek?"]


@pytest.mark.parametrize("price", [0, 100, 5000])
def test_offer_price_out_of_band_falls_back_to_catalogue(price):
    a = ModelAnswer(drafts=["x"], offer=ModelOffer(content_id=OFFER.content_id, price_cents=price))
    assert review_answer(a, eligible=[OFFER], disclose_ai=True).offer.price_cents == 1299


def test_rejected_drafts_are_removed_with_reasons():
    a = ModelAnswer(drafts=["hi babe", "I'm a real girl, add me on snapchat", "miss you"])
    r = review_answer(a, eligible=[], disclose_ai=True)
    assert r.drafts == ["hi babe", "miss you"]
    assert len(r.rejected) == 1 and r.rejected[0].startswith("draft 2 rejected")
    assert "real human" in r.rejected[0] and "contact details" in r.rejected[0]


def test_all_drafts_rejected_is_unusable_and_drops_the_offer():
    a = ModelAnswer(drafts=["venmo me"], offer=ModelOffer(content_id=OFFER.content_id, price_cents=1299))
    r = review_answer(a, eligible=[OFFER], disclose_ai=True)
    assert not r.usable and r.offer is None


def test_no_offer_allowed_drops_it():
    a = ModelAnswer(drafts=["x"], offer=ModelOffer(content_id=OFFER.content_id, price_cents=1299))
    assert review_answer(a, eligible=[OFFER], disclose_ai=True, allow_offer=False).offer is None


# --------------------------------------------------------------------------- inbox


def test_inbox_order_unanswered_first_then_spend_then_recent():
    def c(fan, unanswered, spend, minutes):
        return ConversationSummary("elena", fan, unanswered, spend, T0 + timedelta(minutes=minutes))

    got = inbox_order([c("a", False, 9999, 9), c("b", True, 10, 1), c("c", True, 500, 0), c("d", True, 10, 5),
                       c("e", False, 0, 10)])  # fmt: skip
    assert [x.fan_id for x in got] == ["c", "d", "b", "a", "e"]


def test_reply_seconds():
    assert reply_seconds(T0, T0 + timedelta(minutes=3, seconds=5)) == 185
    assert reply_seconds(None, T0) is None
    assert reply_seconds(T0 + timedelta(seconds=5), T0) == 0


def test_templates_stand_in_while_the_model_is_pending_or_failed():
    assert drafts_for_inbox("ready", ["d1"], ["t1"]) == (["d1"], False)
    assert drafts_for_inbox("pending", [], ["t1", "t2"]) == (["t1", "t2"], True)
    assert drafts_for_inbox("failed", [], ["t1"]) == (["t1"], True)
    assert drafts_for_inbox("flagged", [], ["t1"]) == ([], False)
