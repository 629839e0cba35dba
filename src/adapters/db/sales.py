"""PostgreSQL side of the sales handler (handlers/sales.py) and the read models of fans,
sends and sales used by the CLI and the admin app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.adapters.db.sends import BUMP_VERSION_SQL, upsert_fan
from vaultline.domain import sends as rules
from vaultline.domain.retry import TransientError
from vaultline.domain.similarity import NEAR_DUPLICATE_DISTANCE
from vaultline.events import NAMESPACE, Envelope, MediaSent, SaleRecorded, derived_id
from vaultline.handlers.sales import FanFacts


def _known(r: asyncpg.Record) -> rules.KnownSale:
    return rules.KnownSale(
        sale_id=r["id"], kind=r["kind"], gross_cents=r["gross_cents"], fan_id=r["fan_id"], occurred_at=r["occurred_at"],
        sources=tuple(r["sources"]), route_uuid=r["route_uuid"], message_uuid=r["message_uuid"],
        post_uuid=r["post_uuid"], matched_message_uuid=r["matched_message_uuid"],
    )  # fmt: skip


def _send(r: asyncpg.Record) -> rules.SendForSale:
    return rules.SendForSale(r["id"], r["content_id"], r["message_uuid"], r["price_cents"], r["sent_at"], r["purchased_at"])


class PostgresSalesTx:
    def __init__(self, tx: PostgresUnitOfWork) -> None:
        self._tx = tx
        self.conn = tx.conn

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        return await self._tx.first_time(handler, event_id, stream_seq)

    async def lock(self, key: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)

    async def fan_seen(self, f: FanFacts) -> None:
        await upsert_fan(self.conn, f.creator, f.platform, f.fan_id, f.seen_at)
        await self.conn.execute(
            """UPDATE fans SET handle = COALESCE($4, handle), display_name = COALESCE($5, display_name),
                      last_message_at = GREATEST(last_message_at, $6),
                      followed_at = LEAST(followed_at, $7), subscribed_at = LEAST(subscribed_at, $8),
                      updated_at = now()
               WHERE creator = $1 AND platform = $2 AND fan_id = $3""",
            f.creator, f.platform, f.fan_id, f.ref.handle, f.ref.display_name, f.message_at, f.followed_at,
            f.subscribed_at,
        )  # fmt: skip

    async def record_send(self, event: Envelope, p: MediaSent) -> None:
        exists = await self.conn.fetchval(
            "SELECT 1 FROM sends WHERE content_id = $1 AND platform = $2 AND fan_id = $3 AND message_uuid = $4",
            p.content_id, p.platform, p.fan_id, p.message_uuid,
        )  # fmt: skip
        if exists:
            return
        await upsert_fan(self.conn, event.creator, p.platform, p.fan_id, event.occurred_at)
        generation = await self.conn.fetchval(
            """SELECT COALESCE(max(generation) + 1, 0) FROM sends
               WHERE content_id = $1 AND platform = $2 AND fan_id = $3 AND status <> 'failed'""",
            p.content_id, p.platform, p.fan_id,
        )  # fmt: skip
        media = await self.conn.fetchval("SELECT fanvue_media_uuid FROM content WHERE id = $1", p.content_id)
        await self.conn.execute(
            """INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, media_uuid, message_uuid,
                                 price_cents, text, status, generation, forced, reason, sent_by, reserved_at, sent_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'sent', $11, $12, $13, $14, $15, $15)""",
            derived_id(event.event_id, "send-row"), uuid.uuid5(NAMESPACE, f"attempt:{p.message_uuid}"), p.content_id,
            event.creator, p.platform, p.fan_id, media, p.message_uuid, p.price_cents, p.text, generation,
            p.forced, p.reason, p.sent_by, event.occurred_at,
        )  # fmt: skip
        await self.conn.execute(BUMP_VERSION_SQL, event.creator, p.platform, p.fan_id)  # a send the guard must see

    async def sale_for_key(self, creator: str, dedupe_key: str) -> uuid.UUID | None:
        return await self.conn.fetchval("SELECT sale_id FROM sale_keys WHERE creator = $1 AND dedupe_key = $2", creator, dedupe_key)

    async def candidate_sales(self, creator: str, platform: str, report: rules.SaleReport) -> list[rules.KnownSale]:
        ids = list(report.ids)
        rows = await self.conn.fetch(
            """SELECT * FROM sales WHERE creator = $1 AND platform = $2 AND (
                   (cardinality($3::text[]) > 0 AND (route_uuid = ANY($3) OR message_uuid = ANY($3)
                        OR post_uuid = ANY($3) OR matched_message_uuid = ANY($3)))
                OR (fan_id = $4 AND gross_cents = $5 AND occurred_at BETWEEN $6 AND $7))""",
            creator, platform, ids, report.fan_id, report.gross_cents,
            report.sold_at - rules.SALE_MATCH_WINDOW, report.sold_at + rules.SALE_MATCH_WINDOW,
        )  # fmt: skip
        return [_known(r) for r in rows]

    async def sends_by_message(self, creator: str, platform: str, ids: set[str]) -> list[rules.SendForSale]:
        rows = await self.conn.fetch(
            """SELECT * FROM sends WHERE creator = $1 AND platform = $2 AND message_uuid = ANY($3) AND status = 'sent'
               ORDER BY id""",
            creator, platform, list(ids),
        )  # fmt: skip
        return [_send(r) for r in rows]

    async def fan_sends(self, creator: str, platform: str, fan_id: str) -> list[rules.SendForSale]:
        rows = await self.conn.fetch(
            """SELECT * FROM sends WHERE creator = $1 AND platform = $2 AND fan_id = $3 AND status = 'sent'
                   AND purchased_at IS NULL ORDER BY id""",
            creator, platform, fan_id,
        )  # fmt: skip
        return [_send(r) for r in rows]

    async def insert_sale(self, sale_id: uuid.UUID, event: Envelope, p: SaleRecorded) -> None:
        await self.conn.execute(
            """INSERT INTO sales(id, creator, platform, dedupe_key, kind, gross_cents, net_cents, currency, fan_id,
                                 route_uuid, message_uuid, post_uuid, occurred_at, source, sources, event_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ARRAY[$14], $15)""",
            sale_id, event.creator, p.platform, p.dedupe_key, p.kind, p.gross_cents, p.net_cents, p.currency,
            p.fan_id, p.route_uuid, p.message_uuid, p.post_uuid, p.sold_at, p.source, event.event_id,
        )  # fmt: skip
        await self.conn.execute(
            "INSERT INTO sale_keys(creator, dedupe_key, sale_id) VALUES ($1, $2, $3)", event.creator, p.dedupe_key, sale_id
        )

    async def merge_into(self, sale_id: uuid.UUID, creator: str, p: SaleRecorded) -> None:
        await self.conn.execute(
            """UPDATE sales SET sources = CASE WHEN $2 = ANY(sources) THEN sources ELSE sources || $2 END,
                      route_uuid = COALESCE(route_uuid, $3), message_uuid = COALESCE(message_uuid, $4),
                      post_uuid = COALESCE(post_uuid, $5), net_cents = COALESCE(net_cents, $6),
                      fan_id = COALESCE(fan_id, $7)
               WHERE id = $1""",
            sale_id, p.source, p.route_uuid, p.message_uuid, p.post_uuid, p.net_cents, p.fan_id,
        )  # fmt: skip
        await self.conn.execute(
            "INSERT INTO sale_keys(creator, dedupe_key, sale_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            creator, p.dedupe_key, sale_id,
        )  # fmt: skip

    async def apply_purchase(
        self, sale_id: uuid.UUID, sends: list[rules.SendForSale], gross_cents: int, sold_at: datetime
    ) -> None:
        ordered = sorted(sends, key=lambda s: str(s.content_id))
        for s in ordered:
            # The tracker's lock on this content row: its read-modify-write never loses our counters.
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(s.content_id))
        for s, cents in zip(ordered, rules.split_revenue(gross_cents, len(ordered))):
            moved = await self.conn.execute(
                """UPDATE content SET times_purchased = times_purchased + 1, revenue_cents = revenue_cents + $2,
                          updated_at = now() WHERE id = $1""",
                s.content_id, cents,
            )  # fmt: skip
            if moved.endswith(" 0"):
                raise TransientError(f"content {s.content_id} is not projected yet")
            await self.conn.execute(
                "UPDATE sends SET purchased_at = $2, updated_at = now() WHERE id = $1 AND purchased_at IS NULL", s.send_id, sold_at
            )
        first = ordered[0]
        await self.conn.execute(
            "UPDATE sales SET matched_send_id = $2, matched_content_id = $3, matched_message_uuid = $4 WHERE id = $1",
            sale_id, first.send_id, first.content_id, first.message_uuid,
        )  # fmt: skip

    async def add_fan_spend(
        self, creator: str, platform: str, fan_id: str, gross_cents: int, sold_at: datetime, purchase: bool
    ) -> None:
        await self.conn.execute(
            """UPDATE fans SET lifetime_spend_cents = lifetime_spend_cents + $4, purchases = purchases + $5,
                      last_purchase_at = GREATEST(last_purchase_at, $6), updated_at = now()
               WHERE creator = $1 AND platform = $2 AND fan_id = $3""",
            creator, platform, fan_id, gross_cents, 1 if purchase else 0, sold_at,
        )  # fmt: skip


class PostgresSalesStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresSalesTx]:
        async with PostgresUnitOfWork(self._pool) as tx:
            yield PostgresSalesTx(tx)


# --------------------------------------------------------------------------- read models


async def list_fans(pool: asyncpg.Pool, creator: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT f.*, (SELECT count(*) FROM sends s WHERE s.creator = f.creator AND s.platform = f.platform
                          AND s.fan_id = f.fan_id AND s.status = 'sent') AS received
           FROM fans f WHERE ($1::text IS NULL OR f.creator = $1)
           ORDER BY f.lifetime_spend_cents DESC, f.last_message_at DESC NULLS LAST, f.fan_id LIMIT $2""",
        creator, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def get_fan(pool: asyncpg.Pool, fan_id: str, creator: str | None = None) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        """SELECT * FROM fans WHERE fan_id = $1 AND ($2::text IS NULL OR creator = $2)
           ORDER BY lifetime_spend_cents DESC LIMIT 1""",
        fan_id, creator,
    )  # fmt: skip
    return dict(row) if row else None


async def fan_sends(pool: asyncpg.Pool, creator: str, platform: str, fan_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT s.*, c.original_filename, c.category, c.tags, c.vault FROM sends s
           LEFT JOIN content c ON c.id = s.content_id
           WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $3
           ORDER BY COALESCE(s.sent_at, s.reserved_at) DESC""",
        creator, platform, fan_id,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def list_sales(pool: asyncpg.Pool, *, unmatched: bool = False, creator: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT * FROM sales WHERE ($1::text IS NULL OR creator = $1)
               AND (NOT $2 OR (kind = 'purchase' AND matched_send_id IS NULL))
           ORDER BY occurred_at DESC LIMIT $3""",
        creator, unmatched, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]


OFFERABLE_COLUMNS = "id, phash, category, tags, uploaded_at, price_cents"
OFFERABLE_FROM = """FROM content
           WHERE creator = $1 AND status = 'uploaded' AND vault = 'ppv' AND fanvue_media_uuid IS NOT NULL
               AND (platform IS NULL OR platform = $2)
           ORDER BY uploaded_at DESC NULLS LAST LIMIT $3"""
HEX64 = "'^[0-9a-fA-F]{16}$'"
# suggest-ppv's candidates for one fan, cut down by PostgreSQL: the same recent offerable rows,
# minus what the fan has (exact, or a 64-bit pHash within $6 bits: bit_count of the XOR, as
# ContentIndex.nearest), scored like domain.sends.suggest (an integer part from the category and
# tags bought before, plus recency), keeping only rows that can be in the top $5:
# - of rows with the same integer part and upload time (so the very same score in Python, whose
#   ties go by id), at most $5, the first by id;
# - of those, the ones scoring at least the $5-th best minus a margin far above float and
#   4-decimal rounding differences.
# domain.sends.suggest still ranks, scores and prices what comes back, so it stays the one
# definition; this only spares Python the rows that cannot make the top. If a hash anywhere in
# play is not 16 hex digits (SQL cannot read it the way Python does), or a bought item has a NULL
# tag (SQL joins never match NULL), every recent row comes back and Python decides all.
OFFER_CANDIDATES_SQL = f"""
WITH recent AS (SELECT {OFFERABLE_COLUMNS}, description, fanvue_media_uuid,
                       CASE WHEN phash ~ {HEX64} THEN ('x' || phash)::bit(64) END AS bits
                {OFFERABLE_FROM}),
has AS (SELECT h.content_id, h.phash, CASE WHEN h.phash ~ {HEX64} THEN ('x' || h.phash)::bit(64) END AS bits
        FROM send_guard_rows('{{}}', $1, $2, $4) h WHERE h.kind = 'h'),
b AS (SELECT c.category, c.tags FROM sends s JOIN content c ON c.id = s.content_id
      WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $4 AND s.purchased_at IS NOT NULL),
cats AS (SELECT category, count(*) AS n FROM b WHERE category <> '' GROUP BY category),
tagc AS (SELECT t, count(*) AS n FROM b, LATERAL (SELECT DISTINCT unnest(b.tags) AS t) x GROUP BY t),
odd AS (SELECT EXISTS (SELECT 1 FROM recent WHERE phash <> '' AND bits IS NULL)
            OR EXISTS (SELECT 1 FROM has WHERE phash <> '' AND bits IS NULL)
            OR EXISTS (SELECT 1 FROM b WHERE array_position(b.tags, NULL) IS NOT NULL) AS odd),
tagsum AS (SELECT r.id, sum(tagc.n) AS n FROM recent r, unnest(r.tags) u(t) JOIN tagc ON tagc.t = u.t
           GROUP BY r.id),
eligible AS (
    SELECT r.id, r.uploaded_at, COALESCE(3 * cats.n, 0) + COALESCE(tagsum.n, 0) AS whole
    FROM recent r LEFT JOIN cats ON cats.category = r.category LEFT JOIN tagsum ON tagsum.id = r.id
    WHERE NOT EXISTS (SELECT 1 FROM has h WHERE h.content_id = r.id OR bit_count(r.bits # h.bits) <= $6)),
scored AS (
    SELECT id, whole + CASE WHEN uploaded_at IS NULL THEN 0 ELSE
               2 * power(0.5::float8, greatest(0, extract(epoch FROM $7::timestamptz - uploaded_at))::float8 / 86400 / 7)
           END AS score
    FROM (SELECT *, row_number() OVER (PARTITION BY whole, uploaded_at ORDER BY id) AS nth
          FROM eligible) e
    WHERE nth <= $5),
cut AS (SELECT score FROM scored ORDER BY score DESC OFFSET $5 - 1 LIMIT 1)
SELECT {OFFERABLE_COLUMNS}, description, fanvue_media_uuid FROM recent
WHERE (SELECT odd FROM odd)
   OR id IN (SELECT id FROM scored WHERE score >= COALESCE((SELECT score FROM cut), '-infinity') - 0.001)
ORDER BY uploaded_at DESC NULLS LAST"""


def offerable_of(r: asyncpg.Record) -> rules.Offerable:
    return rules.Offerable(r["id"], r["phash"], r["category"], tuple(r["tags"] or ()), r["uploaded_at"], r["price_cents"])


async def offerable_rows(
    pool: asyncpg.Pool, creator: str, platform: str, limit: int = 2000, *,
    fan_id: str | None = None, now: datetime | None = None, top: int | None = None,
) -> list[asyncpg.Record]:  # fmt: skip
    """`offerable`'s rows (with fan, now and top, also description and fanvue_media_uuid)."""
    if fan_id is None or now is None or top is None:
        return await pool.fetch(f"SELECT {OFFERABLE_COLUMNS} {OFFERABLE_FROM}", creator, platform, limit)
    return await pool.fetch(OFFER_CANDIDATES_SQL, creator, platform, limit, fan_id, max(top, 1),
                            NEAR_DUPLICATE_DISTANCE, now)  # fmt: skip


async def offerable(
    pool: asyncpg.Pool, creator: str, platform: str, limit: int = 2000, *,
    fan_id: str | None = None, now: datetime | None = None, top: int | None = None,
) -> list[rules.Offerable]:  # fmt: skip
    """Uploaded PPV content of the creator on this platform (the `limit` most recent). With a fan,
    `now` and `top`: only the rows that can be in domain.sends.suggest's `top` for that fan (a
    superset of them: rank them with suggest)."""
    return [offerable_of(r) for r in await offerable_rows(pool, creator, platform, limit, fan_id=fan_id, now=now, top=top)]


class PostgresSendReads:
    """handlers.sends.SendReads over the pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def history(self, creator: str, platform: str, fan_id: str) -> list[rules.PriorSend]:
        from vaultline.adapters.db.sends import fan_history

        return await fan_history(self._pool, creator, platform, fan_id)

    async def offerable(
        self, creator: str, platform: str, *, fan_id: str | None = None, now: datetime | None = None,
        top: int | None = None,
    ) -> list[rules.Offerable]:  # fmt: skip
        return await offerable(self._pool, creator, platform, fan_id=fan_id, now=now, top=top)

    async def bought(self, creator: str, platform: str, fan_id: str) -> list[rules.Bought]:
        return await bought(self._pool, creator, platform, fan_id)

    async def spend_cents(self, creator: str, platform: str, fan_id: str) -> int:
        v = await self._pool.fetchval(
            "SELECT lifetime_spend_cents FROM fans WHERE creator = $1 AND platform = $2 AND fan_id = $3",
            creator, platform, fan_id,
        )  # fmt: skip
        return int(v or 0)


async def bought(pool: asyncpg.Pool, creator: str, platform: str, fan_id: str) -> list[rules.Bought]:
    rows = await pool.fetch(
        """SELECT c.category, c.tags FROM sends s JOIN content c ON c.id = s.content_id
           WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $3 AND s.purchased_at IS NOT NULL""",
        creator, platform, fan_id,
    )  # fmt: skip
    return [rules.Bought(r["category"], tuple(r["tags"] or ())) for r in rows]
