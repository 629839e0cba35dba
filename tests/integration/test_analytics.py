"""The analytics consumer on real NATS + PostgreSQL: numbers against hand-computed values,
idempotent under redelivery, and the same aggregates after a replay into empty tables."""

from __future__ import annotations

import pytest

from tests.integration.analytics_seed import (
    CREATOR,
    D1,
    D2,
    D3,
    EXPECTED_CONVERSION_BY_BAND,
    EXPECTED_CONVERSION_BY_CATEGORY,
    EXPECTED_FUNNEL,
    EXPECTED_REVENUE_BY_CATEGORY,
    EXPECTED_REVENUE_BY_KIND,
    EXPECTED_REVENUE_BY_VAULT,
    EXPECTED_TOP_CONTENT,
    EXPECTED_TOP_FANS,
    EXPECTED_TOTALS,
    seed_events,
)
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.adapters.db.analytics import TABLES, PostgresAnalyticsStore, load_stats, reset
from vaultline.bootstrap import Runtime
from vaultline.handlers import analytics

pytestmark = pytest.mark.integration


async def seeded(settings, pool) -> list:
    events = seed_events()
    async with Runtime(settings, ["analytics"], relay=False) as rt:
        for e in events:
            await rt.publisher.publish(e)
        await wait_until(
            lambda: pool.fetchval("SELECT count(*) = $1 FROM processed_events WHERE handler = 'analytics'", len(events)),
            timeout=60, what="analytics to process every seeded event",
        )  # fmt: skip
        stored = [se.event async for se in read_events(rt.ports.js)]
    return stored


async def snapshot(pool) -> dict[str, list]:
    out = {}
    for table in TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table}")
        out[table] = sorted(tuple(str(v) for v in r.values()) for r in rows)
    return out


async def test_numbers_match_the_hand_computed_values(settings, pool):
    await seeded(settings, pool)
    s = await load_stats(pool, creator=CREATOR, since=D1, until=D3)

    assert s.totals.model_dump() == EXPECTED_TOTALS
    assert [(f.stage, f.count) for f in s.funnel] == EXPECTED_FUNNEL
    assert s.revenue_by_kind == EXPECTED_REVENUE_BY_KIND
    assert s.revenue_by_vault == EXPECTED_REVENUE_BY_VAULT
    assert s.revenue_by_category == EXPECTED_REVENUE_BY_CATEGORY
    assert {c.key: (c.offers, c.purchases, c.rate) for c in s.conversion_by_category} == EXPECTED_CONVERSION_BY_CATEGORY
    assert [(c.key, c.offers, c.purchases, c.rate) for c in s.conversion_by_price_band] == EXPECTED_CONVERSION_BY_BAND
    assert [(c.content_id, c.sends, c.purchases, c.revenue_cents) for c in s.top_content] == [
        (str(c), *rest) for c, *rest in EXPECTED_TOP_CONTENT
    ]
    assert s.top_content[0].category == "beach" and s.top_content[0].vault == "ppv"
    assert [(f.fan_id, f.sales, f.purchases, f.revenue_cents) for f in s.top_fans] == EXPECTED_TOP_FANS
    assert s.top_fans[1].handle == "@fan_a"

    days = {d.day: d for d in s.daily}
    assert sorted(days) == [D1, D2, D3]
    assert (days[D1].generated, days[D1].approved, days[D1].uploaded) == (6, 4, 4)
    assert (days[D2].sends, days[D2].ppv_offers, days[D2].purchases) == (7, 5, 3)
    assert days[D2].revenue_by_kind == {"purchase": 6300, "tip": 700}
    assert days[D3].revenue_by_kind == {"subscription": 999}

    # A long window takes the threshold path for top content/fans (all-time totals as bounds):
    # the same lists as the plain aggregation of a short one.
    from datetime import timedelta

    long = await load_stats(pool, creator=CREATOR, since=D3 - timedelta(days=59), until=D3)
    assert long.top_content == s.top_content and long.top_fans == s.top_fans and long.totals == s.totals
    # A narrower window and another creator.
    s12 = await load_stats(pool, creator=CREATOR, since=D1, until=D2)
    assert s12.totals.revenue_cents == 7000 and s12.totals.fans_subscribed == 0
    assert [f.fan_id for f in s12.top_fans] == ["fan_c", "fan_a", "fan_b"]
    everyone = await load_stats(pool, creator=None, since=D1, until=D3)
    assert everyone.totals == s.totals
    nobody = await load_stats(pool, creator="someone-else", since=D1, until=D3)
    assert nobody.totals.revenue_cents == 0 and nobody.top_content == [] and nobody.totals.conversion is None


async def test_redelivery_and_replay_give_the_same_aggregates(settings, pool):
    stored = await seeded(settings, pool)
    before = await snapshot(pool)
    assert before["analytics_daily"], "the seed must have produced aggregates"
    store = PostgresAnalyticsStore(pool)

    # Every event delivered again: nothing moves.
    assert [await analytics.handle(e, store=store) for e in stored] == [False] * len(stored)
    assert await snapshot(pool) == before

    # Replay the stream into empty tables: the same aggregates.
    await reset(pool)
    assert (await load_stats(pool, creator=CREATOR, since=D1, until=D3)).totals.revenue_cents == 0
    counted = [await analytics.handle(e, store=store) for e in stored]
    assert counted.count(False) == 1  # s1's second report: processed, but the same sale
    assert await snapshot(pool) == before
    assert (await load_stats(pool, creator=CREATOR, since=D1, until=D3)).totals.model_dump() == EXPECTED_TOTALS


async def test_rebuild_replays_the_stream_through_the_running_consumer(settings, pool):
    from vaultline.entrypoints.stats_cli import rebuild

    events = seed_events()
    async with Runtime(settings, ["analytics"], relay=False) as rt:
        for e in events:
            await rt.publisher.publish(e)
        done = "SELECT count(*) = $1 FROM processed_events WHERE handler = 'analytics'"
        await wait_until(lambda: pool.fetchval(done, len(events)), timeout=60, what="first pass")
        before = await snapshot(pool)
        await rebuild(settings)
        await wait_until(lambda: pool.fetchval(done, len(events)), timeout=60, what="the replay")
        assert await snapshot(pool) == before
    assert (await load_stats(pool, creator=CREATOR, since=D1, until=D3)).totals.model_dump() == EXPECTED_TOTALS
