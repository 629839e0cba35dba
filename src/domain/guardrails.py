"""Chat guardrails: what a fan's message or a model's draft must never slip past. Pure.

Two checks, both before anything could reach a fan:

- `check_fan_message(text)`: a fan who says they are under 18 or of school age, asks to meet in
  person, mentions self-harm, or wants to pay / talk outside the platform. Any hit means no
  sales draft: the conversation is flagged for a person with the reasons.
- `check_draft(text, disclose_ai=...)`: a model draft (or a person's edit) that claims the
  persona is a real human when the persona discloses being AI, or that contains contact
  details or off-platform payment. Such a draft is rejected.

The patterns err on the side of flagging: a false flag costs a person one look, a miss can
cost far more. Matching is on a normalised copy (lower case, straight apostrophes, single
spaces) plus a "squashed" copy (letters and digits only) for names people space out or
punctuate to slip past filters ("p a y p a l", "cash.app").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

MINOR = "minor"
MEETING = "meeting"
SELF_HARM = "self_harm"
OFF_PLATFORM_PAYMENT = "off_platform_payment"
OFF_PLATFORM_CONTACT = "off_platform_contact"
CLAIMS_HUMAN = "claims_human"
CONTACT_DETAILS = "contact_details"

REASONS: dict[str, str] = {
    MINOR: "fan may be under 18 (age or school mentioned)",
    MEETING: "fan asks to meet in person",
    SELF_HARM: "fan mentions self-harm or suicide",
    OFF_PLATFORM_PAYMENT: "payment outside the platform",
    OFF_PLATFORM_CONTACT: "contact outside the platform",
    CLAIMS_HUMAN: "claims the persona is a real human, but the persona discloses being AI",
    CONTACT_DETAILS: "contains contact details",
}


@dataclass(frozen=True)
class Flag:
    code: str
    reason: str
    match: str  # the words that triggered it, for the person who reviews

    def describe(self) -> str:
        return f"{self.reason} (\u201c{self.match}\u201d)"


def normalise(text: str) -> str:
    t = text.lower()
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").replace("\u00b4", "'")
    t = t.replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", t).strip()


def squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", normalise(text))


def _rx(*patterns: str) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


_I_AM = r"(?:i am|i'm|im|iam|i m|am)"
_NUM_UNDER_18 = r"(?:1[0-7]|[5-9]|thirteen|fourteen|fifteen|sixteen|seventeen|twelve|eleven|ten)"

_MINOR = _rx(
    # "I'm 16", "i am 15 years old", "im only 17", "I'm just 14 lol"
    rf"\b{_I_AM}\s+(?:only\s+|just\s+|barely\s+|still\s+)?{_NUM_UNDER_18}\b(?!\s*(?:min|mins|minutes|hours|hrs|h|km|miles|mi|inches|inch|in|cm|ft|feet|foot|%|k|\$|dollars|bucks|times|days|weeks|months|:|'|\x22|/|x|\.\d|,\d|pm|am|o'clock))",
    # "16 years old", "15yo", "17 y/o", "16 yrs old" — not "my 15 year old son"
    rf"(?<!my )(?<!his )(?<!her )(?<!our )(?<!their )\b{_NUM_UNDER_18}\s*(?:-|\s)?\s*(?:years?|yrs?|yr)\s*(?:-|\s)?\s*old\b",
    rf"(?<!my )(?<!his )(?<!her )(?<!our )(?<!their )\b{_NUM_UNDER_18}\s*(?:yo|y/o|y\.o\.?|yrs)\b",
    r"\b(?:age|aged)\s*:?\s*(?:1[0-7])\b",
    r"\bunder\s*-?\s*age\b|\bunderaged?\b|\bminor\b(?!\s+(?:issue|thing|detail|problem|change|edit|fix))",
    rf"\b{_I_AM}\s+(?:not|n't|not yet)\s+(?:18|eighteen|an adult|legal|of age)\b",
    r"\bnot\s+(?:18|eighteen)\s+(?:yet|until)\b",
    r"\b(?:turn|turning|be)\s+(?:18|eighteen)\s+(?:next|in|soon|this)\b",
    r"\b(?:when|once|till|until)\s+i(?:'m| am| turn)\s+(?:18|eighteen)\b",
    r"\b(?:high|middle|elementary|primary|secondary|grade|junior high)\s*school\b",
    r"\bhighschool\b|\bjunior high\b|\bjr\.? high\b",
    r"\b(?:in|at|after|before|skipping|skip|from|ditching)\s+school\b",
    r"\b(?:7th|8th|9th|10th|11th|12th|seventh|eighth|ninth|tenth|eleventh|twelfth)\s+grade\b",
    r"\bgrade\s+(?:[6-9]|1[0-2])\b|\byear\s+(?:[7-9]|1[0-3])\b(?!\s*(?:old|ago|of))",
    r"\b(?:freshman|sophomore|junior|senior)\s+(?:in|at)\s+(?:high|hs)\b|\b(?:freshman|sophomore|junior|senior)\s+year\s+of\s+high\b",
    r"\bmy\s+(?:homeroom|home room|math|maths|english|science|history)?\s*teacher\b",
    r"\b(?:gcses?|a-levels?|sats? test|prom|homework|detention|recess|school bus)\b",
    r"\bmy\s+(?:mom|mum|dad|parents)\s+(?:won't|wont|don't|dont|doesn't|doesnt)\s+(?:let|allow)\s+me\b",
    r"\b(?:i'm|im|i am)\s+(?:just\s+|only\s+|still\s+)?(?:a\s+)?(?:kid|child|teen|teenager)\b|\bmy\s+(?:parents|mom|mum|dad)\s+(?:check|checks|found|find)\s+my\s+phone\b",
)
_BORN_IN = re.compile(r"\b(?:born in|born)\s+(?:'|\u2019)?((?:19|20)\d\d)\b")

_MEETING = _rx(
    r"\bmeet\s*(?:up|ups|you|u|irl|in person|in real life|for real|somewhere|me|sometime)\b",
    r"\b(?:can|could|should|shall|will|wanna|want to|would love to|let's|lets)\s+(?:we\s+)?meet\b",
    r"\bmeet(?:ing)?\s+(?:in|at)\s+(?:person|real life|a (?:bar|hotel|cafe|restaurant|club|park))\b",
    r"\b(?:meet|see|date|visit|hang out|hook up)\b.{0,30}\b(?:in person|irl|in real life|face to face|face-to-face)\b",
    r"\b(?:hang out|hangout|hook up|hookup)\b(?!\s+(?:here|online|on here|in chat))",
    r"\b(?:come|coming)\s+(?:over|visit|see you|to (?:your|my) (?:place|house|flat|apartment|hotel|city))\b",
    r"\b(?:visit|pick)\s+(?:you|u)\b",
    r"\bwhere\s+(?:do|d'you|do ya)\s+(?:you|u)\s+(?:live|stay)\b|\bwhat\s+(?:city|town|area|country)\s+(?:are|r)\s+(?:you|u)\s+(?:in|from)\b",
    r"\b(?:your|ur)\s+(?:address|home address|location|hotel room)\b",
    r"\b(?:grab|get|have)\s+(?:a\s+)?(?:drink|drinks|coffee|dinner|lunch|beer)s?\s+(?:with|together|sometime)\b",
    r"\b(?:take|taking)\s+(?:you|u)\s+(?:out|on a date|to dinner)\b|\b(?:real|irl|actual)\s+date\b|\bgo on a date\b",
    r"\b(?:fly|drive|travel)\s+(?:to|out to)\s+(?:see|meet)\s+(?:you|u)\b|\bsee\s+(?:you|u)\s+(?:in person|irl|for real)\b",
    r"\bi'?m\s+(?:near|close to|in)\s+your\s+(?:city|area|town)\b|\b(?:i'll|ill|i will)\s+be\s+in\s+your\s+(?:city|area|town)\b",
)

_SELF_HARM = _rx(
    r"\b(?:kill|killing|hurt|hurting|harm|harming|cut|cutting)\s+(?:myself|my self|meself)\b",
    r"\bself[\s-]?harm(?:ing)?\b|\bsuicid(?:e|al)\b|\bkms\b",
    r"\b(?:end|ending|take|taking)\s+my\s+(?:own\s+)?life\b|\bend\s+it\s+all\b",
    r"\b(?:want|wanna|going|gonna)\s+(?:to\s+)?die\b|\bwish\s+i\s+(?:was|were)\s+dead\b|\bbetter\s+off\s+dead\b",
    r"\b(?:no|nothing)\s+(?:reason|point)\s+(?:to|in)\s+(?:live|living|going on)\b",
    r"\b(?:don't|dont|do not)\s+want\s+to\s+(?:live|be alive|be here)\s*(?:anymore|any more)?\b",
    r"\boverdos(?:e|ing)\b|\b(?:slit|slitting)\s+my\s+wrists?\b|\bhang\s+myself\b",
    r"\b(?:can't|cant|cannot)\s+go\s+on\b|\bnot\s+worth\s+living\b",
)

_PAY_WORDS = (
    r"paypal|pay pal|venmo|cash ?app|\$cashtag|zelle|revolut|wise transfer|western union|moneygram|skrill|"
    r"bitcoin|btc|crypto|ethereum|\beth\b|usdt|tether|litecoin|monero|gift ?cards?|amazon card|steam card|"
    r"wire transfer|bank transfer|bank details|iban|sort code|routing number|apple pay|google pay|"
    r"buy ?me ?a ?coffee|ko-?fi|patreon|onlyfans|throne|wishlist"
)
_OFF_PLATFORM_PAYMENT = _rx(
    rf"\b(?:{_PAY_WORDS})\b",
    r"\bpay\s+(?:you\s+|u\s+|me\s+)?(?:directly|direct|outside|off|privately|in cash|cash|without)\b",
    r"\b(?:off|outside(?: of)?)\s+(?:the\s+)?(?:platform|site|app|fanvue|here)\b",
    r"\b(?:avoid|skip|dodge|without)\s+(?:the\s+)?(?:fees?|fanvue(?:'s)?\s+(?:cut|fees?)|platform\s+fees?|their\s+cut)\b",
    r"\b(?:send|give)\s+(?:you|u)\s+(?:money|cash)\s+(?:directly|privately|another way|some other way)\b",
)
_SQUASHED_PAY = ("paypal", "venmo", "cashapp", "bitcoin", "westernunion", "giftcard")

_APPS = r"snapchat|snap|insta|instagram|ig|telegram|whatsapp|whats app|kik|discord|signal|wickr|skype|twitter|tiktok|facebook|fb|line app|wechat"
_OFF_PLATFORM_CONTACT = _rx(
    rf"\b(?:add|dm|text|message|msg|hit|find|follow|call)\s+(?:me|you|u)\s+(?:on|at|up on)\s+(?:{_APPS})\b",
    rf"\b(?:your|ur|what's your|whats your|got)\s+(?:{_APPS})\b",
    rf"\b(?:my|here's my|heres my)\s+(?:{_APPS}|number|phone|cell|email|e-mail)\b",
    r"\b(?:your|ur)\s+(?:number|phone number|phone|cell|email|e-mail|personal account|real account)\b",
    r"\b(?:whatsapp|telegram|snapchat)\b",
)
_SQUASHED_APPS = ("snapchat", "whatsapp", "telegram")

_EMAIL = re.compile(r"[a-z0-9._%+-]+\s*(?:@|\(at\)|\[at\]| at )\s*[a-z0-9-]+\s*(?:\.|\(dot\)|\[dot\]| dot )\s*[a-z]{2,}")
_PHONE = re.compile(r"(?<!\w)(?:\+?\d[\s().-]?){8,}\d(?!\w)")
_URL = re.compile(r"\bhttps?://|\bwww\.|\b[a-z0-9-]+\.(?:com|net|org|io|me|co|ly|gg|app|link|xyz|info)\b(?:/|\b)")
_HANDLE = re.compile(r"(?<![\w.])@[a-z0-9_.]{3,}")

_CLAIMS_HUMAN = _rx(
    rf"\b{_I_AM}\s+(?:a\s+)?(?:real|actual|genuine|living|breathing)\s+(?:person|human(?: being)?|woman|girl|man|guy|lady|people)\b",
    rf"\b{_I_AM}\s+(?:100%\s+|totally\s+|definitely\s+|really\s+|so\s+|very\s+|completely\s+)?(?:real|human)\b(?!\s*(?:ly|quick|fast|good|happy|excited|glad|sorry|tired|busy|close|bad|wet|hot|horny|soon|curious|nice|sweet|cute|fun))",
    rf"\b{_I_AM}\s+(?:a\s+)?human(?: being)?\b",
    rf"\b{_I_AM}\s+(?:not|n't|definitely not|totally not|no)\s+(?:an?\s+)?(?:ai|a\.i\.?|bot|robot|chatbot|chat bot|fake|program|computer|machine|algorithm|language model|llm)\b",
    r"\b(?:i'm|im|i am)\s+no\s+(?:ai|bot|robot)\b|\bno\s+(?:ai|bots?|robots?)\s+here\b|\bnot\s+(?:a\s+)?bot\s+i\s+promise\b",
    r"\b(?:it's|its|it is|this is)\s+(?:really|actually|truly|the real)\s+me\b",
    r"\bflesh and blood\b|\breal[- ]life (?:girl|woman|person)\b|\b(?:typing|texting) (?:this )?(?:myself|personally|with my own hands)\b",
    r"\b(?:a\s+)?real\s+(?:person|human|girl|woman)\s+(?:here|behind (?:this|the screen))\b",
)


def _first(patterns: list[re.Pattern[str]], text: str) -> str | None:
    for p in patterns:
        m = p.search(text)
        if m:
            return m.group(0).strip()
    return None


def _squashed_hit(words: tuple[str, ...], squashed: str) -> str | None:
    for w in words:
        if w in squashed:
            return w
    return None


def _minor(text: str, today: date | None) -> str | None:
    hit = _first(_MINOR, text)
    if hit:
        return hit
    year = (today or date.today()).year
    for m in _BORN_IN.finditer(text):
        if year - int(m.group(1)) < 18:
            return m.group(0)
    return None


def check_fan_message(text: str, *, today: date | None = None) -> list[Flag]:
    """Every reason a person must look at this conversation before anything is sold in it."""
    t = normalise(text)
    if not t:
        return []
    s = squash(text)
    flags: list[Flag] = []

    def add(code: str, hit: str | None) -> None:
        if hit and all(f.code != code for f in flags):
            flags.append(Flag(code, REASONS[code], hit))

    add(MINOR, _minor(t, today))
    add(MEETING, _first(_MEETING, t))
    add(SELF_HARM, _first(_SELF_HARM, t))
    add(OFF_PLATFORM_PAYMENT, _first(_OFF_PLATFORM_PAYMENT, t) or _squashed_hit(_SQUASHED_PAY, s))
    add(OFF_PLATFORM_CONTACT, _first(_OFF_PLATFORM_CONTACT, t) or _squashed_hit(_SQUASHED_APPS, s))
    return flags


def check_draft(text: str, *, disclose_ai: bool) -> list[Flag]:
    """Every reason this draft must not be sent. Empty = acceptable."""
    t = normalise(text)
    s = squash(text)
    flags: list[Flag] = []
    if disclose_ai:
        hit = _first(_CLAIMS_HUMAN, t)
        if hit:
            flags.append(Flag(CLAIMS_HUMAN, REASONS[CLAIMS_HUMAN], hit))
    contact = None
    for rx in (_EMAIL, _URL, _HANDLE, _PHONE):
        m = rx.search(t)
        if m:
            contact = m.group(0).strip()
            break
    contact = contact or _first(_OFF_PLATFORM_CONTACT, t) or _squashed_hit(_SQUASHED_APPS, s)
    if contact:
        flags.append(Flag(CONTACT_DETAILS, REASONS[CONTACT_DETAILS], contact))
    pay = _first(_OFF_PLATFORM_PAYMENT, t) or _squashed_hit(_SQUASHED_PAY, s)
    if pay:
        flags.append(Flag(OFF_PLATFORM_PAYMENT, REASONS[OFF_PLATFORM_PAYMENT], pay))
    return flags


def allows_sales(flags: list[Flag]) -> bool:
    """A flagged conversation gets no sales draft (and no offer)."""
    return not flags


__all__ = [
    "CLAIMS_HUMAN",
    "CONTACT_DETAILS",
    "MEETING",
    "MINOR",
    "OFF_PLATFORM_CONTACT",
    "OFF_PLATFORM_PAYMENT",
    "REASONS",
    "SELF_HARM",
    "Flag",
    "allows_sales",
    "check_draft",
    "check_fan_message",
    "normalise",
]
