"""Analytics query benchmark: the function behind GET /api/stats (`load_stats` + the JSON the
API returns) over 90 days of aggregates for 1,000,000 sends and 100,000 sales. Target: <= 200 ms.

The aggregate tables are filled the way the analytics consumer fills them (same tables, same
keys, one row per creator/day/metric/dim, per creator/day/content, per creator/day/fan), but
by SQL in bulk: pushing 1.1 M events through the consumer would take the better part of an
hour and measure the consumer, not the query. The consumer's own throughput is measured
separately on --handler-events real events through `analytics.handle`.

    .venv/bin/python bench/stats.py [--sends 1000000] [--sales 100000] [--days 90] [--runs 20]
                                    [--database-url URL] [--json]

Without --database-url (or VAULTLINE_TEST_DATABASE_URL) it starts an embedded PostgreSQL
(pgserver) in a temporary directory and removes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaultline.adapters.db import create_pool, migrate  # noqa: E402
from vaultline.adapters.db.analytics import PostgresAnalyticsStore, load_stats  # noqa: E402
from vaultline.adapters.embedded import EmbeddedPostgres, create_database, drop_database  # noqa: E402
from vaultline.domain import analytics as a  # noqa: E402
from vaultline.events import new_event  # noqa: E402
from vaultline.handlers import analytics  # noqa: E402

CATEGORIES = ["lingerie", "beach", "fitness", "cosplay", "boudoir", "casual", "outdoor", "studio"]


async def seed(pool, *, sends: int, sales: int, days: int, creators: int, contents: int, fans: int, until: date) -> float:
    """Fill the aggregate tables for `sends` sends and `sales` sales over `days` days."""
    t0 = time.perf_counter()
    since = until - timedelta(days=days - 1)
    bands = [label for _, label in a.PRICE_BANDS]
    async with pool.acquire() as conn:
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            """CREATE TEMP TABLE b_content AS
               SELECT i, 'creator' || (i % $1) AS creator, md5('content' || i)::uuid AS content_id,
                      ($2::text[])[1 + (i % array_length($2::text[], 1))] AS category,
                      CASE WHEN i % 10 < 7 THEN 'ppv' ELSE 'feed' END AS vault,
                      $3::date + (i * $4 / $5) AS approved_on
               FROM generate_series(0, $5 - 1) AS i""",
            creators, CATEGORIES, since, days, contents,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO analytics_content (creator, content_id, vault, category, price_cents)
               SELECT creator, content_id, vault, category, CASE WHEN vault = 'ppv' THEN 999 END FROM b_content"""
        )
        # Sends go to content approved in the 30 days before the send (what operators send).
        await conn.execute(
            """CREATE TEMP TABLE b_sends AS
               SELECT c.creator, s.day, c.content_id, c.category, c.vault,
                      'fan' || (random() * $4)::int AS fan_id,
                      CASE WHEN random() < 0.7 THEN (ARRAY[399, 799, 1499, 2999, 5999])[1 + (random() * 4)::int] ELSE 0 END AS price
               FROM (SELECT $1::date + (random() * ($2 - 1))::int AS day, random() AS r FROM generate_series(1, $3)) s
               JOIN LATERAL (SELECT * FROM b_content c
                             WHERE c.i = greatest(0, least($5 - 1,
                                   ((s.day - $1::date) * $5 / $2) - (s.r * $5 * 30 / $2)::int))) c ON true""",
            since, days, sends, fans, contents,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO analytics_content_sends_daily (creator, day, content_id, sends)
               SELECT creator, day, content_id, count(*) FROM b_sends GROUP BY 1, 2, 3"""
        )
        await conn.execute(
            f"""INSERT INTO analytics_daily (creator, day, metric, dim, value)
                SELECT creator, day, '{a.SENDS}', '', count(*) FROM b_sends GROUP BY 1, 2
                UNION ALL SELECT creator, day, '{a.OFFERS}', '', count(*) FROM b_sends WHERE price > 0 GROUP BY 1, 2
                UNION ALL SELECT creator, day, '{a.OFFERS}', 'category:' || category, count(*) FROM b_sends
                          WHERE price > 0 GROUP BY 1, 2, 4
                UNION ALL SELECT creator, day, '{a.OFFERS}', 'band:' || ($1::text[])[CASE WHEN price < 500 THEN 1
                          WHEN price < 1000 THEN 2 WHEN price < 2000 THEN 3 WHEN price < 5000 THEN 4 ELSE 5 END],
                          count(*) FROM b_sends WHERE price > 0 GROUP BY 1, 2, 4""",
            bands,
        )  # fmt: skip
        # Sales: mostly purchases of sends; tips, subscriptions, renewals.
        await conn.execute(
            """CREATE TEMP TABLE b_sales AS
               SELECT s.creator, s.day, s.content_id, s.category, s.vault, s.fan_id,
                      CASE WHEN k < 0.75 THEN 'purchase' WHEN k < 0.88 THEN 'tip' WHEN k < 0.95 THEN 'renewal'
                           ELSE 'subscription' END AS kind,
                      greatest(s.price, 500) AS gross, s.price
               FROM (SELECT *, random() AS k FROM b_sends TABLESAMPLE BERNOULLI (100.0 * $1 / $2) REPEATABLE (7)
                     LIMIT $1) s""",
            sales, sends,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO analytics_content_daily (creator, day, content_id, purchases, revenue_cents)
               SELECT creator, day, content_id, count(*) FILTER (WHERE kind = 'purchase'), sum(gross)
               FROM b_sales WHERE kind IN ('purchase', 'tip') GROUP BY 1, 2, 3"""
        )
        await conn.execute(
            """INSERT INTO analytics_fan_daily (creator, day, fan_id, sales, purchases, revenue_cents)
               SELECT creator, day, fan_id, count(*), count(*) FILTER (WHERE kind = 'purchase'), sum(gross)
               FROM b_sales GROUP BY 1, 2, 3"""
        )
        await conn.execute(
            """INSERT INTO analytics_fans (creator, fan_id, handle, revenue_cents)
               SELECT creator, fan_id, '@' || fan_id, sum(gross) FROM b_sales GROUP BY 1, 2"""
        )
        await conn.execute(
            """UPDATE analytics_content c SET purchases = t.p, revenue_cents = t.r
               FROM (SELECT creator, content_id, count(*) FILTER (WHERE kind = 'purchase') AS p, sum(gross) AS r
                     FROM b_sales WHERE kind IN ('purchase', 'tip') GROUP BY 1, 2) t
               WHERE c.creator = t.creator AND c.content_id = t.content_id"""
        )
        await conn.execute(
            f"""INSERT INTO analytics_daily (creator, day, metric, dim, value)
                SELECT creator, day, '{a.SALES}', kind, count(*) FROM b_sales GROUP BY 1, 2, 4
                UNION ALL SELECT creator, day, '{a.REVENUE_KIND}', kind, sum(gross) FROM b_sales GROUP BY 1, 2, 4
                UNION ALL SELECT creator, day, '{a.REVENUE_VAULT}', vault, sum(gross) FROM b_sales
                          WHERE kind IN ('purchase', 'tip') GROUP BY 1, 2, 4
                UNION ALL SELECT creator, day, '{a.REVENUE_CATEGORY}', category, sum(gross) FROM b_sales
                          WHERE kind IN ('purchase', 'tip') GROUP BY 1, 2, 4
                UNION ALL SELECT creator, day, '{a.PURCHASES}', '', count(*) FROM b_sales
                          WHERE kind = 'purchase' AND price > 0 GROUP BY 1, 2
                UNION ALL SELECT creator, day, '{a.PURCHASES}', 'category:' || category, count(*) FROM b_sales
                          WHERE kind = 'purchase' AND price > 0 GROUP BY 1, 2, 4"""
        )  # fmt: skip
        # The image pipeline (~200 images a day per creator) and replies (~1 per 5 sends).
        await conn.execute(
            f"""INSERT INTO analytics_daily (creator, day, metric, dim, value)
                SELECT 'creator' || c, d::date, m, '', (180 + random() * 40)::int
                FROM generate_series(0, $1 - 1) c, generate_series($2::date, $3::date, '1 day') d,
                     unnest(ARRAY['{a.GENERATED}', '{a.APPROVED}', '{a.UPLOADED}', '{a.REJECTED}',
                                  '{a.MESSAGES_RECEIVED}', '{a.REPLIES_SENT}']) m""",
            creators, since, until,
        )  # fmt: skip
        # Reply times (log-normal-ish, seconds to hours) and their histogram, bucketed like
        # domain.analytics.reply_bucket.
        await conn.execute(
            """INSERT INTO analytics_reply_times (creator, event_id, day, seconds, bucket)
               SELECT creator, id, day, s, CASE WHEN s < 1 THEN 0 ELSE 1 + floor(ln(s) / ln($5))::int END
               FROM (SELECT 'creator' || (i % $1) AS creator, md5('reply' || i)::uuid AS id, $2::date + (i % $3) AS day,
                            exp(random() * 9) AS s FROM generate_series(1, $4) i) r""",
            creators, since, days, sends // 5, a.REPLY_BUCKET_GROWTH,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO analytics_reply_hist (creator, day, bucket, n)
               SELECT creator, day, bucket, count(*) FROM analytics_reply_times GROUP BY 1, 2, 3"""
        )
        await conn.execute("ANALYZE")
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in (
            "analytics_daily", "analytics_content_sends_daily", "analytics_content_daily", "analytics_fan_daily",
            "analytics_reply_times")}  # fmt: skip
    print(f"seeded in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()),
          file=sys.stderr)  # fmt: skip
    return time.perf_counter() - t0


async def measure(pool, *, runs: int, creator: str | None, since: date, until: date) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s = await load_stats(pool, creator=creator, since=since, until=until)
        s.model_dump_json()  # what GET /api/stats returns
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"creator": creator or "all", "days": (until - since).days + 1, "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1), "max_ms": round(times[-1], 1),
            "sends": s.totals.sends, "sales": s.totals.sales}  # fmt: skip


async def check(pool, *, creator: str | None, since: date, until: date) -> None:
    """The fast paths (threshold top-N, bucketed median) against plain SQL over every row."""
    s = await load_stats(pool, creator=creator, since=since, until=until)
    args = (since, until, creator)
    where = "day BETWEEN $1 AND $2 AND ($3::text IS NULL OR creator = $3)"
    median = await pool.fetchval(
        f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM analytics_reply_times WHERE {where}", *args)
    assert s.totals.median_reply_seconds == (round(median, 3) if median is not None else None), (s.totals, median)
    fans = await pool.fetch(f"""SELECT fan_id, sum(revenue_cents) AS r FROM analytics_fan_daily WHERE {where}
                                GROUP BY creator, fan_id ORDER BY r DESC, sum(purchases) DESC, fan_id LIMIT 10""", *args)
    assert [(f.fan_id, f.revenue_cents) for f in s.top_fans] == [(r["fan_id"], r["r"]) for r in fans], "top fans"
    content = await pool.fetch(f"""SELECT content_id, sum(revenue_cents) AS r FROM analytics_content_daily WHERE {where}
                                   GROUP BY creator, content_id ORDER BY r DESC LIMIT 10""", *args)
    assert [c.revenue_cents for c in s.top_content] == [r["r"] for r in content], "top content"


async def handler_throughput(pool, n: int) -> dict:
    """n events (sends and sales alternating) through analytics.handle, one transaction each."""
    store = PostgresAnalyticsStore(pool)
    now = datetime.now(timezone.utc)
    events = []
    for i in range(n // 2):
        cid = uuid.uuid4()
        events.append(new_event("media.sent", creator="bench-handler", key=cid, occurred_at=now, payload={
            "platform": "local", "fan_id": f"f{i % 500}", "content_id": str(cid), "message_uuid": f"m{i}",
            "price_cents": 999}))  # fmt: skip
        events.append(new_event("sale.recorded", creator="bench-handler", key=f"s{i}", occurred_at=now, payload={
            "dedupe_key": f"s{i}", "kind": "purchase", "gross_cents": 999, "platform": "local", "source": "local",
            "sold_at": now.isoformat(), "fan_id": f"f{i % 500}", "message_uuid": f"m{i}"}))  # fmt: skip
    t0 = time.perf_counter()
    for e in events:
        await analytics.handle(e, store=store)
    elapsed = time.perf_counter() - t0
    return {"events": len(events), "seconds": round(elapsed, 2), "events_per_s": round(len(events) / elapsed)}


async def main(args: argparse.Namespace) -> dict:
    url = args.database_url or os.environ.get("VAULTLINE_TEST_DATABASE_URL")
    pg, tmp = None, None
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="vaultline-bench-pg-"))
        pg = EmbeddedPostgres(tmp, durable=False)
        url = await asyncio.to_thread(pg.start)
    name = f"bench_stats_{secrets.token_hex(4)}"
    db_url = await create_database(url, name)
    try:
        await migrate(db_url)
        pool = await create_pool(db_url, max_size=4)
        try:
            until = datetime.now(timezone.utc).date()
            since = until - timedelta(days=args.days - 1)
            seeded = await seed(pool, sends=args.sends, sales=args.sales, days=args.days, creators=args.creators,
                                contents=args.contents, fans=args.fans, until=until)  # fmt: skip
            for creator, first in ((None, since), ("creator0", since), ("creator1", until - timedelta(days=6))):
                await check(pool, creator=creator, since=first, until=until)  # also warms the cache
            results = [
                await measure(pool, runs=args.runs, creator=None, since=since, until=until),
                await measure(pool, runs=args.runs, creator="creator0", since=since, until=until),
                await measure(pool, runs=args.runs, creator="creator0", since=until - timedelta(days=6), until=until),
            ]
            handler = await handler_throughput(pool, args.handler_events)
        finally:
            await pool.close()
    finally:
        await drop_database(url, name)
        if pg is not None:
            await asyncio.to_thread(pg.stop)
            shutil.rmtree(tmp, ignore_errors=True)
    return {"sends": args.sends, "sales": args.sales, "days": args.days, "seed_s": round(seeded, 1),
            "queries": results, "handler": handler, "target_ms": 200,
            "ok": all(r["p95_ms"] <= 200 for r in results)}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sends", type=int, default=1_000_000)
    p.add_argument("--sales", type=int, default=100_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--creators", type=int, default=3)
    p.add_argument("--contents", type=int, default=10_000)
    p.add_argument("--fans", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--handler-events", type=int, default=2_000)
    p.add_argument("--database-url")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = asyncio.run(main(args))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['sends']:,} sends, {out['sales']:,} sales over {out['days']} days (seeded in {out['seed_s']} s)")
        print(f"{'scope':<10} {'days':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for r in out["queries"]:
            print(f"{r['creator']:<10} {r['days']:>5} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8}")
        h = out["handler"]
        print(f"analytics consumer: {h['events']} events in {h['seconds']} s = {h['events_per_s']} events/s")
        print("target p95 <= 200 ms:", "met" if out["ok"] else "NOT met")
    sys.exit(0 if out["ok"] else 1)
