"""Pure analytics logic: price bands, days, periods, the median's bucket arithmetic, the CSV
rows and the SVG charts (escaped, no script, no style attribute)."""

from __future__ import annotations

import math
import random
import statistics
from datetime import date, datetime, timedelta, timezone

import pytest

from vaultline.domain import analytics as a
from vaultline.domain.errors import Invalid
from vaultline.entrypoints.stats_views import period_bounds, svg_conversion, svg_funnel, svg_revenue_per_day, to_csv


@pytest.mark.parametrize(("cents", "band"), [(0, "< $5"), (499, "< $5"), (500, "$5–9.99"), (999, "$5–9.99"),
                                             (1000, "$10–19.99"), (4999, "$20–49.99"), (5000, "$50+")])  # fmt: skip
def test_price_band(cents, band):
    assert a.price_band(cents) == band


def test_day_of_is_the_utc_date():
    late = datetime(2026, 11, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert a.day_of(late) == date(2026, 11, 3)


def test_window_defaults_and_refusals():
    today = date(2026, 11, 30)
    assert a.window(None, None, today) == (date(2026, 11, 1), today)
    assert a.window(date(2026, 11, 5), None, today) == (date(2026, 11, 5), today)
    with pytest.raises(Invalid, match="is after"):
        a.window(date(2026, 12, 1), today, today)
    with pytest.raises(Invalid, match="at most"):
        a.window(date(2000, 1, 1), today, today)


@pytest.mark.parametrize(("period", "ref", "first", "last", "label"), [
    ("day", date(2026, 11, 3), date(2026, 11, 3), date(2026, 11, 3), "2026-11-03"),
    ("week", date(2026, 11, 3), date(2026, 11, 2), date(2026, 11, 8), "2026-W45"),
    ("week", date(2027, 1, 1), date(2026, 12, 28), date(2027, 1, 3), "2026-W53"),
    ("month", date(2026, 2, 14), date(2026, 2, 1), date(2026, 2, 28), "2026-02"),
    ("month", date(2026, 12, 31), date(2026, 12, 1), date(2026, 12, 31), "2026-12"),
])  # fmt: skip
def test_period_bounds(period, ref, first, last, label):
    assert period_bounds(period, ref) == (first, last, label)


def test_median_from_buckets_equals_the_plain_median():
    rng = random.Random(3)
    for n in (1, 2, 3, 10, 101, 1000):
        values = sorted(math.exp(rng.random() * 9) for _ in range(n))
        by_bucket: dict[int, list[float]] = {}
        for v in values:
            by_bucket.setdefault(a.reply_bucket(v), []).append(v)
        counts = sorted((b, len(vs)) for b, vs in by_bucket.items())
        picked = []
        for rank in a.median_ranks(n):
            bucket, offset = a.locate(rank, counts)
            picked.append(sorted(by_bucket[bucket])[offset])
        assert sum(picked) / len(picked) == pytest.approx(statistics.median(values))


def test_reply_buckets_are_ordered_like_the_values():
    values = [0, 0.5, 1, 1.04, 1.06, 59, 60, 600, 3600, 86400 * 3]
    buckets = [a.reply_bucket(v) for v in values]
    assert buckets == sorted(buckets) and buckets[0] == buckets[1] == 0


def sample_stats() -> a.Stats:
    totals = a.Totals(images_generated=6, images_approved=4, images_uploaded=4, ppv_offers=5, ppv_purchases=3,
                      conversion=0.6, revenue_cents=7999)  # fmt: skip
    return a.Stats(
        creator="elena", since=date(2026, 11, 2), until=date(2026, 11, 4), totals=totals,
        funnel=a.funnel(totals, 4, 3), revenue_by_kind={"purchase": 6300, "tip": 700, "subscription": 999},
        revenue_by_vault={"ppv": 6300}, revenue_by_category={"<b>beach</b>": 2800},
        conversion_by_category=a.conversions({"<b>beach</b>": 1, "lingerie": 4}, {"<b>beach</b>": 1, "lingerie": 2}),
        conversion_by_price_band=a.conversions({"$50+": 1, "< $5": 2}, {}, order=a.BAND_ORDER),
        daily=[a.DayRow(day=date(2026, 11, 3), revenue_by_kind={"purchase": 6300, "tip": 700}),
               a.DayRow(day=date(2026, 11, 4), revenue_by_kind={"subscription": 999})],
        top_content=[], top_fans=[],
    )  # fmt: skip


def test_conversions_sort_by_rate_and_bands_by_price():
    s = sample_stats()
    assert [c.key for c in s.conversion_by_category] == ["<b>beach</b>", "lingerie"]
    assert [c.key for c in s.conversion_by_price_band] == ["< $5", "$50+"]
    assert s.conversion_by_price_band[0].rate == 0.0


def test_csv_rows_carry_the_json_numbers():
    text = to_csv(sample_stats())
    assert text.splitlines()[0] == "section,key,metric,value"
    assert "totals,,revenue_cents,7999" in text and "funnel,purchased,count,3" in text
    assert "daily,2026-11-03,revenue_cents.tip,700" in text


def test_svg_charts_escape_text_and_stay_within_a_strict_csp():
    s = sample_stats()
    for svg in (svg_revenue_per_day(s), svg_funnel(s), svg_conversion(s)):
        assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg and "<b>" not in svg
    assert "&lt;b&gt;beach&lt;/b&gt;" in svg_conversion(s)
    assert svg_revenue_per_day(s).count('class="bar kind-') == 3
    empty = s.model_copy(update={"daily": [], "conversion_by_category": []})
    assert "No revenue" in svg_revenue_per_day(empty) and "No PPV offers" in svg_conversion(empty)
