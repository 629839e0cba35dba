"""Guardrails: many phrasings of what must be flagged, and ordinary messages that must not be."""

from __future__ import annotations

from datetime import date

import pytest

from vaultline.domain import guardrails as g

TODAY = date(2026, 11, 30)


def codes(text: str) -> set[str]:
    return {f.code for f in g.check_fan_message(text, today=TODAY)}


MINOR_PHRASINGS = [
    "I'm 16",
    "i am 15 years old",
    "im 17 lol",
    "I\u2019m only 14",
    "just so you know I'm 13",
    "am 16 btw",
    "16 years old here",
    "15yo and bored",
    "17 y/o",
    "16-year-old guy here",
    "fifteen years old",
    "I'm sixteen",
    "age: 15",
    "aged 16",
    "I'm underage but",
    "im a minor",
    "i'm not 18 yet",
    "im not eighteen",
    "turning 18 next month",
    "when I turn 18 I'll subscribe for real",
    "I'm in high school",
    "im in highschool",
    "I go to middle school",
    "sitting in school rn",
    "bored in class at school",
    "my teacher would kill me",
    "I'm in 10th grade",
    "ninth grade sucks",
    "I'm in year 10",
    "grade 11 is hard",
    "sophomore in high school here",
    "just finished my homework",
    "studying for my GCSEs",
    "my mom won't let me buy stuff",
    "I'm a teenager",
    "im just a kid",
    "born in 2011",
    "I was born in 2010 so",
    "I'm a 16 year old",
    "after school I'll message you",
    "junior high was yesterday lol",
]

MEETING_PHRASINGS = [
    "can we meet?",
    "let's meet up this weekend",
    "wanna meet irl",
    "I'd love to meet you",
    "meet me at the bar",
    "could we meet in person",
    "I want to see you in person",
    "where do you live?",
    "what city are you in",
    "send me your address",
    "let's grab a drink together",
    "can I take you out to dinner",
    "I'll fly to see you",
    "come over to my place",
    "I can pick you up",
    "let's hook up",
    "wanna hang out sometime",
    "I'm in your city next week",
    "I'll be in your area on friday",
    "let's go on a date",
    "a real date, not online",
    "can I visit you",
    "meet face to face?",
]

SELF_HARM_PHRASINGS = [
    "I want to kill myself",
    "sometimes I think about suicide",
    "feeling suicidal tonight",
    "I've been cutting myself again",
    "i hurt myself last night",
    "I just want to die",
    "wanna die honestly",
    "I'm going to end my life",
    "thinking of taking my own life",
    "there's no reason to live",
    "I'd be better off dead",
    "I don't want to be alive anymore",
    "dont want to live anymore",
    "kms",
    "i might overdose",
    "self-harm is all I have",
    "self harm again",
    "I can't go on like this",
    "I wish I was dead",
    "gonna end it all",
]

PAYMENT_PHRASINGS = [
    "can I pay you on paypal?",
    "do you have venmo",
    "what's your cashapp",
    "cash app me your tag",
    "I can zelle you",
    "I'll send bitcoin",
    "pay in crypto?",
    "I can send a gift card",
    "amazon gift cards ok?",
    "let me pay you directly",
    "can I pay outside the platform",
    "let's do it off fanvue",
    "skip the fees and I'll pay you",
    "without fanvue's cut",
    "bank transfer works for me",
    "give me your IBAN",
    "western union?",
    "p a y p a l?",
    "pay.pal works",
    "v.e.n.m.o",
    "USDT on tron",
]

CONTACT_PHRASINGS = [
    "what's your snapchat",
    "add me on snap",
    "text me on whatsapp",
    "do you have telegram",
    "your insta?",
    "dm me on instagram",
    "give me your number",
    "whats your email",
    "here's my number",
    "s n a p c h a t?",
]

CLEAN_FAN = [
    "hey beautiful, how was your day?",
    "loved your last set!",
    "I'm 34 and a huge fan",
    "I'm 5 minutes from home, then I'll buy",
    "i'm 6'2 lol",
    "I've been following you for 15 years",
    "my 15 year old dog is snoring next to me",
    "school of rock is my favourite movie",  # no 'in school', just a title
    "that pic is a 10/10",
    "what do you like to do for fun?",
    "I had a long day at work",
    "send me something special",
    "how much for the red set?",
    "you look amazing in that dress",
    "real life is boring, your page isn't",
    "good morning!",
    "I bought your last one, more please",
    "I'm 19 and in college",
    "I was born in 1990",
    "I'm 45, divorced, lonely lol",
    "",
]


@pytest.mark.parametrize("text", MINOR_PHRASINGS)
def test_minor(text):
    assert g.MINOR in codes(text)


@pytest.mark.parametrize("text", MEETING_PHRASINGS)
def test_meeting(text):
    assert g.MEETING in codes(text)


@pytest.mark.parametrize("text", SELF_HARM_PHRASINGS)
def test_self_harm(text):
    assert g.SELF_HARM in codes(text)


@pytest.mark.parametrize("text", PAYMENT_PHRASINGS)
def test_off_platform_payment(text):
    assert g.OFF_PLATFORM_PAYMENT in codes(text)


@pytest.mark.parametrize("text", CONTACT_PHRASINGS)
def test_off_platform_contact(text):
    assert g.OFF_PLATFORM_CONTACT in codes(text)


@pytest.mark.parametrize("text", CLEAN_FAN)
def test_ordinary_messages_are_not_flagged(text):
    assert g.check_fan_message(text, today=TODAY) == []
    assert g.allows_sales(g.check_fan_message(text, today=TODAY))


def test_a_flag_carries_its_reason_and_the_words():
    [flag] = g.check_fan_message("I'm 16 btw", today=TODAY)
    assert flag.code == g.MINOR
    assert "under 18" in flag.reason
    assert flag.match == "i'm 16"
    assert "under 18" in flag.describe() and "i'm 16" in flag.describe()


def test_several_reasons_are_all_reported_once():
    found = g.check_fan_message("im 16, can we meet up? I'll pay you on paypal, paypal!", today=TODAY)
    assert [f.code for f in found] == [g.MINOR, g.MEETING, g.OFF_PLATFORM_PAYMENT]
    assert not g.allows_sales(found)


def test_born_in_depends_on_today():
    assert g.MINOR in {f.code for f in g.check_fan_message("born in 2008", today=date(2025, 1, 1))}
    assert g.check_fan_message("born in 2008", today=date(2027, 1, 1)) == []


# --------------------------------------------------------------------------- drafts

CLAIMS_HUMAN = [
    "I'm a real person, I promise",
    "i am a real girl babe",
    "I'm real!",
    "im 100% real",
    "I'm totally human",
    "I am a human being",
    "I'm not an AI",
    "i'm not a bot silly",
    "I am not a robot",
    "im definitely not fake",
    "no AI here, just me",
    "It's really me typing",
    "this is actually me",
    "flesh and blood, baby",
    "a real girl here behind the screen",
    "I\u2019m a genuine woman",
    "I'm typing this myself",
]

HONEST_DRAFTS = [
    "I'm an AI persona, but I love chatting with you",
    "I'm not a real person, I'm Elena's AI, and I'm here for you",
    "I'm really happy you wrote",
    "I'm real excited to show you more",
    "that's so sweet of you",
    "I have something special for you today",
    "I'm not human, but I remember everything you tell me",
]

CONTACT_DRAFTS = [
    "email me at elena@example.com",
    "write to elena (at) gmail (dot) com",
    "call me on +1 555 123 4567",
    "text 07700 900123",
    "add me on snapchat",
    "my insta is @elena.real",
    "find me at elena.com",
    "www.elena.net has more",
    "https://t.me/elena",
    "let's talk on telegram",
    "w h a t s a p p me",
]

PAYMENT_DRAFTS = [
    "send it to my paypal",
    "venmo works too",
    "you can pay me directly, no fees",
    "I accept bitcoin",
    "buy me a gift card",
]


@pytest.mark.parametrize("text", CLAIMS_HUMAN)
def test_draft_claiming_to_be_human_is_rejected_when_persona_discloses_ai(text):
    assert g.CLAIMS_HUMAN in {f.code for f in g.check_draft(text, disclose_ai=True)}


@pytest.mark.parametrize("text", CLAIMS_HUMAN)
def test_human_claims_are_a_persona_choice_when_it_does_not_disclose(text):
    assert g.CLAIMS_HUMAN not in {f.code for f in g.check_draft(text, disclose_ai=False)}


@pytest.mark.parametrize("text", HONEST_DRAFTS)
def test_honest_drafts_pass(text):
    assert g.check_draft(text, disclose_ai=True) == []


@pytest.mark.parametrize("text", CONTACT_DRAFTS)
def test_draft_with_contact_details_is_rejected(text):
    codes_ = {f.code for f in g.check_draft(text, disclose_ai=False)}
    assert g.CONTACT_DETAILS in codes_


@pytest.mark.parametrize("text", PAYMENT_DRAFTS)
def test_draft_with_off_platform_payment_is_rejected(text):
    assert g.OFF_PLATFORM_PAYMENT in {f.code for f in g.check_draft(text, disclose_ai=False)}


@pytest.mark.parametrize(
    "text",
    [
        "hey you \U0001f495 how was your day?",
        "I just posted a new set, want a peek? It's $12.99",
        "unlock this one for 9.99 and tell me what you think",
        "miss you already",
        "only for you, 20% off tonight",
    ],
)
def test_ordinary_sales_drafts_pass(text):
    assert g.check_draft(text, disclose_ai=True) == []
