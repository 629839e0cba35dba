"""Sends, PPV pricing and sales matching: the rules, with no I/O.

- The guard: a fan never gets the same content twice, nor a near-copy (perceptual hash within
  NEAR_DUPLICATE_DISTANCE bits, the ingest threshold) of anything they already have, unless a
  person forces it with a reason.
- Pricing: a PPV price from the creator's spend tiers (what this fan has spent so far).
- suggest-ppv: what a fan can still get, ranked by what they bought before and by recency.
- Sale matching: which send a purchase paid for, and whether two reports are one sale.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vaultline.domain.similarity import NEAR_DUPLICATE_DISTANCE, hash_bits, phash_distance

# Fanvue's PPV minimum per the research notes (third-party sources: 300, some say 200). A
# price of 0/None is a free message.
PPV_MIN_CENTS = 300
# A reserved row older than this is treated like `unknown`: its process died mid-call. It must
# exceed SEND_DEADLINE by a margin, so a slow but live sender is never second-guessed.
STALE_RESERVATION = timedelta(minutes=10)
# The platform call of a send (rate-limit waits included) is abandoned after this and treated
# as ambiguous (reconciled by reading the fan's messages).
SEND_DEADLINE = timedelta(minutes=5)
# Two reports of one sale from different sources (webhook / sync / earnings) with no shared
# platform id: same fan, same amount, within this window.
SALE_MATCH_WINDOW = timedelta(minutes=10)
# A purchase matched by fan + price pays for a send made at most this long before it.
PURCHASE_AFTER_SEND = timedelta(days=60)
# Clocks differ a little between Fanvue and us.
CLOCK_SKEW = timedelta(minutes=5)


# --------------------------------------------------------------------------- the guard


@dataclass(frozen=True)
class PriorSend:
    """A live send the fan already has (status reserved, sent or unknown)."""

    send_id: uuid.UUID
    content_id: uuid.UUID
    phash: str | None
    status: str
    reserved_at: datetime
    sent_at: datetime | None = None
    message_uuid: str | None = None
    price_cents: int | None = None
    generation: int = 0
    attempt_id: uuid.UUID | None = None  # the platform message it belongs to


@dataclass(frozen=True)
class Candidate:
    content_id: uuid.UUID
    phash: str | None


@dataclass(frozen=True)
class Violation:
    candidate: uuid.UUID
    prior: PriorSend
    distance: int  # 0 with exact=True: the very same content

    @property
    def exact(self) -> bool:
        return self.candidate == self.prior.content_id

    def describe(self, fan_id: str) -> str:
        p = self.prior
        when = (p.sent_at or p.reserved_at).strftime("%Y-%m-%d %H:%M UTC")
        verb = {"sent": "sent", "reserved": "being sent since", "unknown": "sent (unconfirmed)"}.get(p.status, p.status)
        price = f", ${p.price_cents / 100:.2f}" if p.price_cents else ""
        msg = f", message {p.message_uuid}" if p.message_uuid else ""
        if self.exact:
            return f"fan {fan_id} already has content {p.content_id}: {verb} {when}{msg}{price}"
        return (
            f"content {self.candidate} is a near-copy ({self.distance} bits) of content {p.content_id}, "
            f"which fan {fan_id} already has: {verb} {when}{msg}{price}"
        )


class History:
    """What a fan already has, indexed once: content ids for the exact check, parsed hashes for
    the near-copy check. Checking many candidates (suggest-ppv ranks every offerable item)
    costs one integer XOR per prior send and candidate, not a re-parse of every hash."""

    def __init__(self, history: Iterable[PriorSend], threshold: int = NEAR_DUPLICATE_DISTANCE) -> None:
        self.sends = list(history)
        self.threshold = threshold
        self._by_content = {h.content_id: h for h in self.sends}
        self._hashes = [(h, n) for h in self.sends if (n := hash_bits(h.phash)) is not None]

    def violation(self, c: Candidate) -> Violation | None:
        """The candidate's exact earlier send, else its nearest earlier near-copy, else None."""
        if c.content_id in self._by_content:
            return Violation(c.content_id, self._by_content[c.content_id], 0)
        n = hash_bits(c.phash)
        if n is None or c.phash is None:
            return None
        best: Violation | None = None
        for h, m in self._hashes:
            if len(h.phash or "") != len(c.phash):
                continue
            d = (n ^ m).bit_count()
            if d <= self.threshold and (best is None or d < best.distance):
                best = Violation(c.content_id, h, d)
        return best


def guard(
    candidates: Sequence[Candidate], history: Iterable[PriorSend] | History, threshold: int = NEAR_DUPLICATE_DISTANCE
) -> list[Violation]:
    """One violation per candidate the fan already has (exact first, else the nearest copy)."""
    index = history if isinstance(history, History) else History(history, threshold)
    return [v for c in candidates if (v := index.violation(c)) is not None]


def copies_within(candidates: Sequence[Candidate], threshold: int = NEAR_DUPLICATE_DISTANCE) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """Pairs of one message's contents that are near-copies of each other (a fan would get the
    same picture twice in one go)."""
    out = []
    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            d = phash_distance(a.phash, b.phash)
            if d is not None and d <= threshold:
                out.append((a.content_id, b.content_id, d))
    return out


def refusal(violations: Sequence[Violation], fan_id: str) -> str:
    lines = "; ".join(v.describe(fan_id) for v in violations)
    return f"refused: {lines}. Use --force with --reason to send it anyway."


def unresolved(history: Iterable[PriorSend], now: datetime) -> list[PriorSend]:
    """Sends whose delivery is unknown (a timeout, or a reservation whose process died):
    they must be reconciled against the platform before anything is sent again."""
    return [
        h for h in history if h.status == "unknown" or (h.status == "reserved" and now - h.reserved_at > STALE_RESERVATION)
    ]


def check_price(price_cents: int | None) -> None:
    """Raises ValueError for a price the platform would refuse (None/0 = free)."""
    if price_cents is None or price_cents == 0:
        return
    if price_cents < 0:
        raise ValueError("price must be >= 0 cents")
    if price_cents < PPV_MIN_CENTS:
        raise ValueError(f"a PPV price must be at least {PPV_MIN_CENTS} cents (${PPV_MIN_CENTS / 100:.2f}); got {price_cents}")


# --------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class PriceTier:
    """Fans who have spent at least `min_spend_cents` are offered PPV at `price_cents`."""

    min_spend_cents: int
    price_cents: int


DEFAULT_TIERS: tuple[PriceTier, ...] = (
    PriceTier(0, 999),  # new fans: $9.99
    PriceTier(5_000, 1_499),  # spent $50+: $14.99
    PriceTier(20_000, 2_499),  # spent $200+: $24.99
    PriceTier(50_000, 3_999),  # spent $500+: $39.99
)


def price_for(spend_cents: int, tiers: Sequence[PriceTier] = DEFAULT_TIERS) -> int:
    """The price of the highest tier the fan's lifetime spend reaches (never under the PPV minimum)."""
    ordered = sorted(tiers, key=lambda t: t.min_spend_cents) or list(DEFAULT_TIERS)
    price = ordered[0].price_cents
    for t in ordered:
        if spend_cents >= t.min_spend_cents:
            price = t.price_cents
    return max(price, PPV_MIN_CENTS)


# --------------------------------------------------------------------------- suggest-ppv


@dataclass(frozen=True)
class Offerable:
    content_id: uuid.UUID
    phash: str | None
    category: str | None
    tags: tuple[str, ...]
    uploaded_at: datetime | None
    price_cents: int | None = None


@dataclass(frozen=True)
class Bought:
    category: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Suggestion:
    content_id: uuid.UUID
    score: float
    price_cents: int
    reasons: tuple[str, ...] = field(default_factory=tuple)


def suggest(
    offerable: Iterable[Offerable],
    history: Sequence[PriorSend],
    bought: Sequence[Bought],
    *,
    spend_cents: int,
    now: datetime,
    tiers: Sequence[PriceTier] = DEFAULT_TIERS,
    limit: int = 10,
) -> list[Suggestion]:
    """Uploaded PPV content the fan has not received (nor a near-copy of), best first:
    category bought before (+3 per earlier purchase in it), tags bought before (+1 per
    earlier purchase with that tag), newer first (+2 today, halving every week)."""
    categories = Counter(b.category for b in bought if b.category)
    tag_counts = Counter(t for b in bought for t in set(b.tags))
    price = price_for(spend_cents, tiers)
    has = History(history)
    out: list[Suggestion] = []
    for o in offerable:
        if has.violation(Candidate(o.content_id, o.phash)) is not None:
            continue
        reasons: list[str] = []
        score = 0.0
        if o.category and categories[o.category]:
            score += 3.0 * categories[o.category]
            reasons.append(f"bought {categories[o.category]}x in {o.category}")
        matched = [t for t in o.tags if tag_counts[t]]
        if matched:
            score += float(sum(tag_counts[t] for t in matched))
            reasons.append("tags bought before: " + ", ".join(matched))
        if o.uploaded_at is not None:
            age_days = max(0.0, (now - o.uploaded_at).total_seconds() / 86400)
            score += 2.0 * math.pow(0.5, age_days / 7)
        out.append(Suggestion(o.content_id, round(score, 4), price, tuple(reasons)))
    out.sort(key=lambda s: (-s.score, str(s.content_id)))
    return out[:limit]


# --------------------------------------------------------------------------- sales


@dataclass(frozen=True)
class SaleReport:
    """One source's report of money from a fan (a sale.recorded payload, flattened)."""

    kind: str
    gross_cents: int
    fan_id: str | None
    sold_at: datetime
    source: str
    route_uuid: str | None = None
    message_uuid: str | None = None
    post_uuid: str | None = None

    @property
    def ids(self) -> set[str]:
        return {i for i in (self.route_uuid, self.message_uuid, self.post_uuid) if i}


@dataclass(frozen=True)
class KnownSale:
    sale_id: uuid.UUID
    kind: str
    gross_cents: int
    fan_id: str | None
    occurred_at: datetime
    sources: tuple[str, ...]
    route_uuid: str | None = None
    message_uuid: str | None = None
    post_uuid: str | None = None
    matched_message_uuid: str | None = None

    @property
    def ids(self) -> set[str]:
        return {i for i in (self.route_uuid, self.message_uuid, self.post_uuid, self.matched_message_uuid) if i}


def _kinds_compatible(a: str, b: str) -> bool:
    return a == b or "other" in (a, b)


def same_sale(new: SaleReport, known: KnownSale, window: timedelta = SALE_MATCH_WINDOW) -> str | None:
    """Why `new` is a report of the already-known sale ("ids" / "window"), or None."""
    if not _kinds_compatible(new.kind, known.kind):
        return None
    if new.ids & known.ids:
        return "ids"
    if new.ids and known.ids and not (new.ids & known.ids):
        return None  # both carry platform ids and they differ: two sales
    if (
        new.fan_id is not None
        and new.fan_id == known.fan_id
        and new.gross_cents == known.gross_cents
        and abs(new.sold_at - known.occurred_at) <= window
        and new.source not in known.sources  # one source never reports one sale twice
    ):
        return "window"
    return None


def find_duplicate(new: SaleReport, known: Iterable[KnownSale], window: timedelta = SALE_MATCH_WINDOW) -> KnownSale | None:
    """The known sale `new` duplicates: by platform ids first, then the closest in time."""
    by_window: list[KnownSale] = []
    for k in known:
        why = same_sale(new, k, window)
        if why == "ids":
            return k
        if why == "window":
            by_window.append(k)
    if not by_window:
        return None
    return min(by_window, key=lambda k: (abs(new.sold_at - k.occurred_at), str(k.sale_id)))


@dataclass(frozen=True)
class SendForSale:
    send_id: uuid.UUID
    content_id: uuid.UUID
    message_uuid: str | None
    price_cents: int | None
    sent_at: datetime | None
    purchased_at: datetime | None


def match_purchase(
    sale: SaleReport, by_ids: Sequence[SendForSale], fan_sends: Sequence[SendForSale]
) -> list[SendForSale]:
    """The sends (one platform message: one or more contents) a purchase paid for.

    By the platform's ids (routeUuid / message uuid) when they name a message we sent; else
    the fan's most recent not-yet-bought send at exactly that price, sent before the sale."""
    if sale.kind != "purchase":
        return []
    if by_ids:
        msg = by_ids[0].message_uuid
        return [s for s in by_ids if s.message_uuid == msg and s.purchased_at is None]
    candidates = [
        s
        for s in fan_sends
        if s.purchased_at is None
        and s.price_cents == sale.gross_cents
        and s.sent_at is not None
        and s.sent_at <= sale.sold_at + CLOCK_SKEW
        and sale.sold_at - s.sent_at <= PURCHASE_AFTER_SEND
    ]
    if not candidates:
        return []
    latest = max(candidates, key=lambda s: (s.sent_at, str(s.send_id)))
    if latest.message_uuid is None:
        return [latest]
    return [s for s in candidates if s.message_uuid == latest.message_uuid]


def split_revenue(gross_cents: int, n: int) -> list[int]:
    """A message's price over its n contents, in whole cents; the first ones get the remainder."""
    if n <= 0:
        return []
    base, rest = divmod(gross_cents, n)
    return [base + (1 if i < rest else 0) for i in range(n)]
