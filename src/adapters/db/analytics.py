"""Postgres side of analytics: the handler's transaction (AnalyticsTx) and the query that
turns the daily aggregates into a `Stats` report for the CLI, the report and the API."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.domain import analytics as a
from vaultline.events import Envelope, SaleRecorded
from vaultline.handlers.analytics import ContentFacts, Counts, MessageFacts, WaitingSale


class PostgresAnalyticsTx:
    def __init__(self, uow: PostgresUnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.conn

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        return await self._uow.first_time(handler, event_id, stream_seq)

    async def add_outbox(self, event: Envelope) -> None:
        await self._uow.add_outbox(event)

    async def bump(self, creator: str, day: date, counts: Counts) -> None:
        items = [(m, d, v) for (m, d), v in counts.items() if v]
        if not items:
            return
        await self._conn.execute(
            """INSERT INTO analytics_daily AS t (creator, day, metric, dim, value)
               SELECT $1, $2, m, d, v FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(m, d, v)
               ON CONFLICT (creator, day, metric, dim) DO UPDATE SET value = t.value + EXCLUDED.value""",
            creator, day, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items],
        )  # fmt: skip

    async def content(self, creator: str, content_id: uuid.UUID) -> ContentFacts | None:
        row = await self._conn.fetchrow(
            "SELECT vault, category FROM analytics_content WHERE creator = $1 AND content_id = $2", creator, content_id
        )
        return ContentFacts(vault=row["vault"], category=row["category"]) if row else None

    async def remember_content(self, creator: str, content_id: uuid.UUID, *, vault: str | None,
                               category: str | None, price_cents: int | None, overwrite: bool) -> None:  # fmt: skip
        if overwrite:
            sql = """INSERT INTO analytics_content AS t (creator, content_id, vault, category, price_cents)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (creator, content_id) DO UPDATE
                     SET vault = EXCLUDED.vault, category = EXCLUDED.category, price_cents = EXCLUDED.price_cents"""
        else:
            sql = """INSERT INTO analytics_content AS t (creator, content_id, vault, category, price_cents)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (creator, content_id) DO UPDATE
                     SET vault = coalesce(t.vault, EXCLUDED.vault)"""
        await self._conn.execute(sql, creator, content_id, vault, category, price_cents)

    async def first_milestone(self, creator: str, content_id: uuid.UUID, milestone: str, day: date) -> bool:
        column = {"sent": "first_sent_on", "purchased": "first_purchased_on"}[milestone]
        return bool(await self._conn.fetchval(
            f"""INSERT INTO analytics_content AS t (creator, content_id, {column}) VALUES ($1, $2, $3)
                ON CONFLICT (creator, content_id) DO UPDATE SET {column} = EXCLUDED.{column}
                WHERE t.{column} IS NULL RETURNING 1""",
            creator, content_id, day,
        ))  # fmt: skip

    async def add_send(self, creator: str, message_uuid: str, content_id: uuid.UUID, fan_id: str, day: date) -> bool:
        return bool(await self._conn.fetchval(
            """INSERT INTO analytics_sends (creator, message_uuid, content_id, fan_id, day) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING RETURNING 1""",
            creator, message_uuid, content_id, fan_id, day,
        ))  # fmt: skip

    async def add_message(self, creator: str, message_uuid: str, facts: MessageFacts, fan_id: str, day: date) -> bool:
        return bool(await self._conn.fetchval(
            """INSERT INTO analytics_messages (creator, message_uuid, primary_content, category, vault, price_cents,
                                               band, fan_id, day)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1""",
            creator, message_uuid, facts.primary_content, facts.category, facts.vault, facts.price_cents,
            facts.band, fan_id, day,
        ))  # fmt: skip

    async def message(self, creator: str, message_uuid: str) -> MessageFacts | None:
        row = await self._conn.fetchrow(
            "SELECT primary_content, category, vault, price_cents, band FROM analytics_messages "
            "WHERE creator = $1 AND message_uuid = $2",
            creator, message_uuid,
        )  # fmt: skip
        return MessageFacts(**dict(row)) if row else None

    async def add_sale(self, creator: str, sale: SaleRecorded, event_id: uuid.UUID, day: date, *,
                       message_uuid: str | None) -> bool:  # fmt: skip
        return bool(await self._conn.fetchval(
            """INSERT INTO analytics_sales (creator, dedupe_key, event_id, kind, gross_cents, day, fan_id,
                                            message_uuid, content_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1""",
            creator, sale.dedupe_key, event_id, sale.kind, sale.gross_cents, day, sale.fan_id, message_uuid,
            sale.content_id,
        ))  # fmt: skip

    async def mark_attributed(self, creator: str, dedupe_key: str) -> None:
        await self._conn.execute(
            "UPDATE analytics_sales SET attributed = true WHERE creator = $1 AND dedupe_key = $2", creator, dedupe_key
        )

    async def waiting_sales(self, creator: str, message_uuid: str) -> list[WaitingSale]:
        rows = await self._conn.fetch(
            """SELECT dedupe_key, kind, gross_cents, day, fan_id FROM analytics_sales
               WHERE creator = $1 AND message_uuid = $2 AND NOT attributed ORDER BY day, dedupe_key""",
            creator, message_uuid,
        )  # fmt: skip
        return [WaitingSale(**dict(r)) for r in rows]

    async def bump_content(self, creator: str, day: date, content_id: uuid.UUID, *, sends: int = 0,
                           purchases: int = 0, revenue_cents: int = 0) -> None:  # fmt: skip
        await self._conn.execute(
            """INSERT INTO analytics_content_daily AS t (creator, day, content_id, sends, purchases, revenue_cents)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (creator, day, content_id) DO UPDATE
               SET sends = t.sends + EXCLUDED.sends, purchases = t.purchases + EXCLUDED.purchases,
                   revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents""",
            creator, day, content_id, sends, purchases, revenue_cents,
        )  # fmt: skip

    async def bump_fan(self, creator: str, day: date, fan_id: str, *, sales: int = 0, purchases: int = 0,
                       revenue_cents: int = 0) -> None:  # fmt: skip
        await self._conn.execute(
            """INSERT INTO analytics_fan_daily AS t (creator, day, fan_id, sales, purchases, revenue_cents)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (creator, day, fan_id) DO UPDATE
               SET sales = t.sales + EXCLUDED.sales, purchases = t.purchases + EXCLUDED.purchases,
                   revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents""",
            creator, day, fan_id, sales, purchases, revenue_cents,
        )  # fmt: skip

    async def remember_fan(self, creator: str, fan_id: str, handle: str | None, display_name: str | None) -> None:
        await self._conn.execute(
            """INSERT INTO analytics_fans AS t (creator, fan_id, handle, display_name) VALUES ($1, $2, $3, $4)
               ON CONFLICT (creator, fan_id) DO UPDATE
               SET handle = coalesce(EXCLUDED.handle, t.handle),
                   display_name = coalesce(EXCLUDED.display_name, t.display_name)""",
            creator, fan_id, handle, display_name,
        )  # fmt: skip

    async def reply_waiting(self, creator: str, fan_id: str, received_at: datetime) -> None:
        await self._conn.execute(
            """INSERT INTO analytics_reply_waiting AS t (creator, fan_id, received_at) VALUES ($1, $2, $3)
               ON CONFLICT (creator, fan_id) DO UPDATE SET received_at = least(t.received_at, EXCLUDED.received_at)""",
            creator, fan_id, received_at,
        )  # fmt: skip

    async def take_reply_waiting(self, creator: str, fan_id: str) -> datetime | None:
        return await self._conn.fetchval(
            "DELETE FROM analytics_reply_waiting WHERE creator = $1 AND fan_id = $2 RETURNING received_at",
            creator, fan_id,
        )  # fmt: skip

    async def add_reply_time(self, creator: str, event_id: uuid.UUID, day: date, seconds: float) -> None:
        await self._conn.execute(
            "INSERT INTO analytics_reply_times (creator, event_id, day, seconds) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING",
            creator, event_id, day, seconds,
        )  # fmt: skip


class PostgresAnalyticsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresAnalyticsTx]:
        async with PostgresUnitOfWork(self._pool) as uow:
            yield PostgresAnalyticsTx(uow)


# Every table the analytics handler writes; a rebuild empties them (and its processed_events).
TABLES: tuple[str, ...] = (
    "analytics_daily", "analytics_content", "analytics_sends", "analytics_messages", "analytics_sales",
    "analytics_content_daily", "analytics_fan_daily", "analytics_fans", "analytics_reply_waiting",
    "analytics_reply_times",
)  # fmt: skip


async def reset(pool: asyncpg.Pool) -> None:
    """Forget every aggregate, so a replay of the stream rebuilds them from scratch."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        await conn.execute("DELETE FROM processed_events WHERE handler = 'analytics'")


# --------------------------------------------------------------------------- the query

_DAILY_METRICS = (a.GENERATED, a.APPROVED, a.UPLOADED, a.SENDS, a.OFFERS, a.PURCHASES, a.REVENUE_KIND)


async def load_stats(pool: asyncpg.Pool, *, creator: str | None, since: date, until: date, top: int = 10) -> a.Stats:
    """The report for [since, until] (inclusive, UTC days), one creator or all of them."""
    args = (since, until, creator)
    where = "day BETWEEN $1 AND $2 AND ($3::text IS NULL OR creator = $3)"
    async with pool.acquire() as conn:
        sums = await conn.fetch(f"SELECT metric, dim, sum(value)::bigint AS v FROM analytics_daily WHERE {where} "
                                "GROUP BY metric, dim", *args)  # fmt: skip
        daily = await conn.fetch(
            f"SELECT day, metric, dim, sum(value)::bigint AS v FROM analytics_daily WHERE {where} "
            "AND metric = ANY($4::text[]) AND (dim = '' OR metric = $5) GROUP BY day, metric, dim ORDER BY day",
            *args, list(_DAILY_METRICS), a.REVENUE_KIND,
        )  # fmt: skip
        median = await conn.fetchval(
            f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM analytics_reply_times WHERE {where}",
            *args,
        )  # fmt: skip
        top_content = await conn.fetch(
            f"""SELECT d.creator, d.content_id, d.sends, d.purchases, d.revenue_cents, c.category, c.vault
                FROM (SELECT creator, content_id, sum(sends)::bigint AS sends, sum(purchases)::bigint AS purchases,
                             sum(revenue_cents)::bigint AS revenue_cents
                      FROM analytics_content_daily WHERE {where} GROUP BY creator, content_id
                      ORDER BY revenue_cents DESC, purchases DESC, sends DESC, content_id LIMIT $4) d
                LEFT JOIN analytics_content c USING (creator, content_id)
                ORDER BY d.revenue_cents DESC, d.purchases DESC, d.sends DESC, d.content_id""",
            *args, top,
        )  # fmt: skip
        top_fans = await conn.fetch(
            f"""SELECT d.creator, d.fan_id, d.sales, d.purchases, d.revenue_cents, f.handle, f.display_name
                FROM (SELECT creator, fan_id, sum(sales)::bigint AS sales, sum(purchases)::bigint AS purchases,
                             sum(revenue_cents)::bigint AS revenue_cents
                      FROM analytics_fan_daily WHERE {where} GROUP BY creator, fan_id
                      ORDER BY revenue_cents DESC, purchases DESC, fan_id LIMIT $4) d
                LEFT JOIN analytics_fans f USING (creator, fan_id)
                ORDER BY d.revenue_cents DESC, d.purchases DESC, d.fan_id""",
            *args, top,
        )  # fmt: skip

    by: dict[str, dict[str, int]] = defaultdict(dict)
    for r in sums:
        by[r["metric"]][r["dim"]] = int(r["v"])

    def total(metric: str, dim: str = "") -> int:
        return by.get(metric, {}).get(dim, 0)

    def dims(metric: str, prefix: str = "") -> dict[str, int]:
        return {d[len(prefix):]: v for d, v in by.get(metric, {}).items() if d.startswith(prefix) and d}

    revenue_by_kind = dims(a.REVENUE_KIND)
    totals = a.Totals(
        images_generated=total(a.GENERATED),
        images_approved=total(a.APPROVED),
        images_rejected=total(a.REJECTED),
        images_uploaded=total(a.UPLOADED),
        upload_failures=total(a.UPLOAD_FAILED),
        crop_fallbacks=total(a.CROP_FALLBACK),
        crop_failures=total(a.CROP_FAILED),
        sends=total(a.SENDS),
        ppv_offers=total(a.OFFERS),
        purchases=total(a.SALES, "purchase"),
        ppv_purchases=total(a.PURCHASES),
        conversion=a.rate(total(a.PURCHASES), total(a.OFFERS)),
        sales=sum(dims(a.SALES).values()),
        revenue_cents=sum(revenue_by_kind.values()),
        messages_received=total(a.MESSAGES_RECEIVED),
        replies_suggested=total(a.REPLIES_SUGGESTED),
        replies_flagged=total(a.REPLIES_FLAGGED),
        replies_sent=total(a.REPLIES_SENT),
        median_reply_seconds=round(float(median), 3) if median is not None else None,
        fans_followed=total(a.FANS_FOLLOWED),
        fans_subscribed=total(a.FANS_SUBSCRIBED),
    )
    days: dict[date, a.DayRow] = {}
    field = {a.GENERATED: "generated", a.APPROVED: "approved", a.UPLOADED: "uploaded", a.SENDS: "sends",
             a.OFFERS: "ppv_offers", a.PURCHASES: "purchases"}  # fmt: skip
    for r in daily:
        row = days.setdefault(r["day"], a.DayRow(day=r["day"]))
        if r["metric"] == a.REVENUE_KIND:
            row.revenue_by_kind[r["dim"]] = int(r["v"])
        elif r["dim"] == "":
            setattr(row, field[r["metric"]], int(r["v"]))
    return a.Stats(
        creator=creator,
        since=since,
        until=until,
        totals=totals,
        funnel=a.funnel(totals, total(a.FUNNEL_SENT), total(a.FUNNEL_PURCHASED)),
        revenue_by_kind=_sorted(revenue_by_kind),
        revenue_by_vault=_sorted(dims(a.REVENUE_VAULT)),
        revenue_by_category=_sorted(dims(a.REVENUE_CATEGORY)),
        conversion_by_category=a.conversions(dims(a.OFFERS, "category:"), dims(a.PURCHASES, "category:")),
        conversion_by_price_band=a.conversions(dims(a.OFFERS, "band:"), dims(a.PURCHASES, "band:"), order=a.BAND_ORDER),
        daily=[days[d] for d in sorted(days)],
        top_content=[
            a.TopContent(content_id=str(r["content_id"]), category=r["category"], vault=r["vault"], sends=r["sends"],
                         purchases=r["purchases"], revenue_cents=r["revenue_cents"])  # fmt: skip
            for r in top_content
        ],
        top_fans=[
            a.TopFan(fan_id=r["fan_id"], handle=r["handle"], display_name=r["display_name"], sales=r["sales"],
                     purchases=r["purchases"], revenue_cents=r["revenue_cents"])  # fmt: skip
            for r in top_fans
        ],
    )


def _sorted(d: dict[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))
