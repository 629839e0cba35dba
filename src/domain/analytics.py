"""Analytics: what is counted, how a price falls into a band, and the shape of a stats report.
Pure: the analytics handler decides increments with these names, the query module fills the
report, the CLI, the report command and the HTTP API all print the same `Stats`."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

from pydantic import BaseModel, Field

UNKNOWN = "(none)"  # category of a content approved without one, or never seen approved

# Counter names in analytics_daily (metric, dim). Values are counts unless named revenue.*.
GENERATED = "images.generated"
APPROVED = "images.approved"
REJECTED = "images.rejected"
UPLOADED = "images.uploaded"
UPLOAD_FAILED = "images.upload_failed"
CROP_FALLBACK = "images.crop_fallback"
CROP_FAILED = "images.crop_failed"
SENDS = "sends"  # every media.sent (one per content per message)
FUNNEL_SENT = "funnel.sent"  # a content sent for the first time
FUNNEL_PURCHASED = "funnel.purchased"  # a content purchased for the first time
OFFERS = "ppv.offers"  # PPV messages (price > 0), dims: '' | category:<c> | band:<b>
PURCHASES = "ppv.purchases"  # purchases of a PPV offer (matched to its message), same dims
SALES = "sales.kind"  # count, dim = kind
REVENUE_KIND = "revenue.kind"  # cents, dim = kind
REVENUE_VAULT = "revenue.vault"  # cents of sales attributed to a content, dim = vault
REVENUE_CATEGORY = "revenue.category"  # cents of sales attributed to a content, dim = category
MESSAGES_RECEIVED = "messages.received"
REPLIES_SUGGESTED = "replies.suggested"
REPLIES_FLAGGED = "replies.flagged"
REPLIES_SENT = "replies.sent"
FANS_FOLLOWED = "fans.followed"
FANS_SUBSCRIBED = "fans.subscribed"

SALE_KINDS: tuple[str, ...] = ("purchase", "tip", "subscription", "renewal", "other")

# Upper bounds (exclusive, cents) and labels of the price bands conversion is reported by.
PRICE_BANDS: tuple[tuple[int | None, str], ...] = (
    (500, "< $5"),
    (1000, "$5–9.99"),
    (2000, "$10–19.99"),
    (5000, "$20–49.99"),
    (None, "$50+"),
)
BAND_ORDER = {label: i for i, (_, label) in enumerate(PRICE_BANDS)}


def price_band(cents: int) -> str:
    for upper, label in PRICE_BANDS:
        if upper is None or cents < upper:
            return label
    raise AssertionError("unreachable")


REPLY_BUCKET_GROWTH = 1.05


def reply_bucket(seconds: float) -> int:
    """Histogram bucket of a reply time: 0 below one second, then buckets 5% wide."""
    if seconds < 1:
        return 0
    return 1 + int(math.log(seconds) / math.log(REPLY_BUCKET_GROWTH))


def median_ranks(n: int) -> tuple[int, ...]:
    """0-based ranks whose mean is the median of n sorted values (percentile_cont(0.5))."""
    return (n // 2,) if n % 2 else (n // 2 - 1, n // 2)


def locate(rank: int, counts: list[tuple[int, int]]) -> tuple[int, int]:
    """(bucket, rank within it) of a 0-based rank, given (bucket, count) in bucket order."""
    for bucket, n in counts:
        if rank < n:
            return bucket, rank
        rank -= n
    raise ValueError("rank beyond the histogram")


def day_of(at: datetime) -> date:
    """The UTC day an event counts on."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).date()


DEFAULT_DAYS = 30
MAX_DAYS = 3660


def window(since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The reported days: until defaults to today, since to DEFAULT_DAYS days before until."""
    from vaultline.domain.errors import Invalid

    last = until or today
    first = since or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise Invalid(f"since {first} is after until {last}")
    if (last - first).days >= MAX_DAYS:
        raise Invalid(f"a period is at most {MAX_DAYS} days")
    return first, last


def dim(kind: str, value: str | None) -> str:
    return f"{kind}:{value or UNKNOWN}"


def rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


# --------------------------------------------------------------------------- the report


class Totals(BaseModel):
    images_generated: int = 0
    images_approved: int = 0
    images_rejected: int = 0
    images_uploaded: int = 0
    upload_failures: int = 0
    crop_fallbacks: int = 0
    crop_failures: int = 0
    sends: int = 0
    ppv_offers: int = 0
    purchases: int = 0  # every sale of kind purchase
    ppv_purchases: int = 0  # purchases matched to a PPV offer
    conversion: float | None = None  # ppv_purchases / ppv_offers
    sales: int = 0
    revenue_cents: int = 0
    messages_received: int = 0
    replies_suggested: int = 0
    replies_flagged: int = 0
    replies_sent: int = 0
    median_reply_seconds: float | None = None
    fans_followed: int = 0
    fans_subscribed: int = 0


class FunnelStage(BaseModel):
    stage: str
    count: int


class Conversion(BaseModel):
    key: str  # a category or a price band
    offers: int
    purchases: int
    rate: float | None


class DayRow(BaseModel):
    day: date
    generated: int = 0
    approved: int = 0
    uploaded: int = 0
    sends: int = 0
    ppv_offers: int = 0
    purchases: int = 0  # purchases of PPV offers
    revenue_by_kind: dict[str, int] = Field(default_factory=dict)

    @property
    def revenue_cents(self) -> int:
        return sum(self.revenue_by_kind.values())


class TopContent(BaseModel):
    content_id: str
    category: str | None = None
    vault: str | None = None
    sends: int
    purchases: int
    revenue_cents: int


class TopFan(BaseModel):
    fan_id: str
    handle: str | None = None
    display_name: str | None = None
    sales: int
    purchases: int
    revenue_cents: int


class Stats(BaseModel):
    """Everything `vaultline stats`, `vaultline report` and GET /api/stats show."""

    creator: str | None = None  # None: every creator
    since: date
    until: date  # inclusive
    totals: Totals
    funnel: list[FunnelStage]
    revenue_by_kind: dict[str, int]
    revenue_by_vault: dict[str, int]
    revenue_by_category: dict[str, int]
    conversion_by_category: list[Conversion]
    conversion_by_price_band: list[Conversion]
    daily: list[DayRow]
    top_content: list[TopContent]
    top_fans: list[TopFan]


def conversions(offers: dict[str, int], purchases: dict[str, int], *, order: dict[str, int] | None = None) -> list[Conversion]:
    keys = set(offers) | set(purchases)
    rows = [Conversion(key=k, offers=offers.get(k, 0), purchases=purchases.get(k, 0),
                       rate=rate(purchases.get(k, 0), offers.get(k, 0))) for k in keys]  # fmt: skip
    if order is not None:
        return sorted(rows, key=lambda r: (order.get(r.key, len(order)), r.key))
    return sorted(rows, key=lambda r: (-(r.rate or 0), -r.offers, r.key))


def funnel(t: Totals, sent: int, purchased: int) -> list[FunnelStage]:
    return [
        FunnelStage(stage="generated", count=t.images_generated),
        FunnelStage(stage="approved", count=t.images_approved),
        FunnelStage(stage="uploaded", count=t.images_uploaded),
        FunnelStage(stage="sent", count=sent),
        FunnelStage(stage="purchased", count=purchased),
    ]


def flat_rows(s: Stats) -> list[tuple[str, str, str, str]]:
    """(section, key, metric, value) rows: the CSV form, the same numbers as the JSON."""
    rows: list[tuple[str, str, str, str]] = []

    def fmt(v: object) -> str:
        return "" if v is None else str(v)

    for name, value in s.totals.model_dump().items():
        rows.append(("totals", "", name, fmt(value)))
    for f in s.funnel:
        rows.append(("funnel", f.stage, "count", str(f.count)))
    for section, mapping in (("revenue_by_kind", s.revenue_by_kind), ("revenue_by_vault", s.revenue_by_vault),
                             ("revenue_by_category", s.revenue_by_category)):  # fmt: skip
        for k, v in mapping.items():
            rows.append((section, k, "revenue_cents", str(v)))
    for section, convs in (("conversion_by_category", s.conversion_by_category),
                           ("conversion_by_price_band", s.conversion_by_price_band)):  # fmt: skip
        for c in convs:
            rows += [(section, c.key, "offers", str(c.offers)), (section, c.key, "purchases", str(c.purchases)),
                     (section, c.key, "rate", fmt(c.rate))]  # fmt: skip
    for d in s.daily:
        day = d.day.isoformat()
        for m in ("generated", "approved", "uploaded", "sends", "ppv_offers", "purchases"):
            rows.append(("daily", day, m, str(getattr(d, m))))
        for k, v in d.revenue_by_kind.items():
            rows.append(("daily", day, f"revenue_cents.{k}", str(v)))
    for c in s.top_content:
        for m in ("sends", "purchases", "revenue_cents"):
            rows.append(("top_content", c.content_id, m, str(getattr(c, m))))
    for f in s.top_fans:
        for m in ("sales", "purchases", "revenue_cents"):
            rows.append(("top_fans", f.fan_id, m, str(getattr(f, m))))
    return rows


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"
