"""Postgres side of analytics: the handler's transaction (AnalyticsTx) and the query that
turns the daily aggregates into a `Stats` report for the CLI, the report and the API."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.adapters.db.rebuild import BatchPool, BufferedTables, ContentBuffer
from vaultline.domain import analytics as a
from vaultline.events import Envelope, SaleRecorded
from vaultline.handlers.analytics import ContentFacts, Counts, MessageFacts, WaitingSale


_BUMP = """INSERT INTO analytics_daily AS t (creator, day, metric, dim, value)
           SELECT $1, $2, m, d, v FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(m, d, v)
           ON CONFLICT (creator, day, metric, dim) DO UPDATE SET value = t.value + EXCLUDED.value"""


# overwrite=False (media.uploaded) only fills a vault not known yet.
_REMEMBER = """INSERT INTO analytics_content AS t (creator, content_id, vault, category, price_cents)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (creator, content_id) DO UPDATE
               SET vault = CASE WHEN $6 THEN EXCLUDED.vault ELSE coalesce(t.vault, EXCLUDED.vault) END,
                   category = CASE WHEN $6 THEN EXCLUDED.category ELSE t.category END,
                   price_cents = CASE WHEN $6 THEN EXCLUDED.price_cents ELSE t.price_cents END"""


_CONTENT_SENDS = """INSERT INTO analytics_content_sends_daily AS t (creator, day, content_id, sends)
                    VALUES ($1, $2, $3, $4) ON CONFLICT (creator, day, content_id) DO UPDATE
                    SET sends = t.sends + EXCLUDED.sends"""
_CONTENT_DAILY = """INSERT INTO analytics_content_daily AS t (creator, day, content_id, purchases, revenue_cents)
                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (creator, day, content_id) DO UPDATE
                    SET purchases = t.purchases + EXCLUDED.purchases, revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents"""
_CONTENT_TOTALS = """INSERT INTO analytics_content AS t (creator, content_id, purchases, revenue_cents)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (creator, content_id) DO UPDATE
                     SET purchases = t.purchases + EXCLUDED.purchases, revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents"""
_FAN_DAILY = """INSERT INTO analytics_fan_daily AS t (creator, day, fan_id, sales, purchases, revenue_cents)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (creator, day, fan_id) DO UPDATE
                SET sales = t.sales + EXCLUDED.sales, purchases = t.purchases + EXCLUDED.purchases,
                    revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents"""
_FAN_REVENUE = """INSERT INTO analytics_fans AS t (creator, fan_id, revenue_cents) VALUES ($1, $2, $3)
                  ON CONFLICT (creator, fan_id) DO UPDATE SET revenue_cents = t.revenue_cents + EXCLUDED.revenue_cents"""
_REMEMBER_FAN = """INSERT INTO analytics_fans AS t (creator, fan_id, handle, display_name) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (creator, fan_id) DO UPDATE
                   SET handle = coalesce(EXCLUDED.handle, t.handle),
                       display_name = coalesce(EXCLUDED.display_name, t.display_name)"""


def _bump_args(creator: str, day: date, counts: Counts) -> tuple[Any, ...] | None:
    # Sorted: concurrent workers touch shared rows in one order (no lock-order deadlocks).
    items = sorted((m, d, v) for (m, d), v in counts.items() if v)
    if not items:
        return None
    return creator, day, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]


class PostgresAnalyticsTx:
    def __init__(self, uow: PostgresUnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.conn

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        return await self._uow.first_time(handler, event_id, stream_seq)

    async def add_outbox(self, event: Envelope) -> None:
        await self._uow.add_outbox(event)

    async def bump(self, creator: str, day: date, counts: Counts) -> None:
        args = _bump_args(creator, day, counts)
        if args:
            await self._conn.execute(_BUMP, *args)

    async def content(self, creator: str, content_id: uuid.UUID) -> ContentFacts | None:
        row = await self._conn.fetchrow(
            "SELECT vault, category FROM analytics_content WHERE creator = $1 AND content_id = $2", creator, content_id
        )
        return ContentFacts(vault=row["vault"], category=row["category"]) if row else None

    async def remember_content(self, creator: str, content_id: uuid.UUID, *, vault: str | None,
                               category: str | None, price_cents: int | None, overwrite: bool) -> None:  # fmt: skip
        await self._conn.execute(_REMEMBER, creator, content_id, vault, category, price_cents, overwrite)

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
        if sends:
            await self._conn.execute(_CONTENT_SENDS, creator, day, content_id, sends)
        if purchases or revenue_cents:
            await self._conn.execute(_CONTENT_DAILY, creator, day, content_id, purchases, revenue_cents)
            await self._conn.execute(_CONTENT_TOTALS, creator, content_id, purchases, revenue_cents)

    async def bump_fan(self, creator: str, day: date, fan_id: str, *, sales: int = 0, purchases: int = 0,
                       revenue_cents: int = 0) -> None:  # fmt: skip
        await self._conn.execute(_FAN_DAILY, creator, day, fan_id, sales, purchases, revenue_cents)
        await self._conn.execute(_FAN_REVENUE, creator, fan_id, revenue_cents)

    async def remember_fan(self, creator: str, fan_id: str, handle: str | None, display_name: str | None) -> None:
        await self._conn.execute(_REMEMBER_FAN, creator, fan_id, handle, display_name)

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
        bucket = a.reply_bucket(seconds)
        if await self._conn.fetchval(
            "INSERT INTO analytics_reply_times (creator, event_id, day, seconds, bucket) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            creator, event_id, day, seconds, bucket,
        ):  # fmt: skip
            await self._conn.execute(
                """INSERT INTO analytics_reply_hist AS t (creator, day, bucket, n) VALUES ($1, $2, $3, 1)
                   ON CONFLICT (creator, day, bucket) DO UPDATE SET n = t.n + 1""",
                creator, day, bucket,
            )  # fmt: skip


class PostgresAnalyticsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresAnalyticsTx]:
        async with PostgresUnitOfWork(self._pool) as uow:
            yield PostgresAnalyticsTx(uow)


class _State:
    """analytics_content, analytics_sends, analytics_messages and analytics_sales as rows in
    memory: what the send and sale paths read back. Rows changed since the last flush are
    `dirty_*` / `new_*`."""

    def __init__(self) -> None:
        self.content: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
        self.sends: set[tuple[str, str, uuid.UUID]] = set()
        self.messages: dict[tuple[str, str], MessageFacts] = {}
        self.sales: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_message: defaultdict[tuple[str, str], list[str]] = defaultdict(list)  # dedupe keys
        self.dirty_content: set[tuple[str, uuid.UUID]] = set()
        self.new_sends: list[tuple[Any, ...]] = []
        self.new_messages: list[tuple[Any, ...]] = []
        self.dirty_sales: set[tuple[str, str]] = set()
        # analytics_daily increments summed per (creator, day) until the flush: one statement
        # per day and batch, not one per event updating the same rows again and again.
        self.bumps: defaultdict[tuple[str, date], defaultdict[tuple[str, str], int]] = defaultdict(
            lambda: defaultdict(int))

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_content or self.new_sends or self.new_messages or self.dirty_sales or self.bumps)

    def add_sale(self, row: dict[str, Any]) -> None:
        self.sales[(row["creator"], row["dedupe_key"])] = row
        if row["message_uuid"] is not None:
            self.by_message[(row["creator"], row["message_uuid"])].append(row["dedupe_key"])


_CONTENT_COLUMNS = ("creator", "content_id", "vault", "category", "price_cents", "first_sent_on",
                    "first_purchased_on", "purchases", "revenue_cents")  # fmt: skip
_SALE_COLUMNS = ("creator", "dedupe_key", "event_id", "kind", "gross_cents", "day", "fan_id", "message_uuid",
                 "content_id", "attributed")  # fmt: skip
_MESSAGE_COLUMNS = ("creator", "message_uuid", "primary_content", "category", "vault", "price_cents", "band",
                    "fan_id", "day")  # fmt: skip


def _upsert(table: str, cols: tuple[str, ...], key: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")  # fmt: skip


_CONTENT_UPSERT = _upsert("analytics_content", _CONTENT_COLUMNS, ("creator", "content_id"))
_SALE_UPSERT = _upsert("analytics_sales", _SALE_COLUMNS, ("creator", "dedupe_key"))
_SEND_INSERT = "INSERT INTO analytics_sends (creator, message_uuid, content_id, fan_id, day) VALUES ($1, $2, $3, $4, $5)"
_MESSAGE_INSERT = (f"INSERT INTO analytics_messages ({', '.join(_MESSAGE_COLUMNS)}) "
                   f"VALUES ({', '.join(f'${i}' for i in range(1, len(_MESSAGE_COLUMNS) + 1))})")  # fmt: skip


class BufferedAnalyticsStore(BufferedTables[_State]):
    """The analytics store inside `replay --rebuild`, over the rebuild's batch (adapters/db/rebuild
    ContentBuffer), as rebuild_sales.BufferedSalesStore is for sales: what the handler reads back
    (content facts and milestones, sends, messages, sales waiting for their message) is read once
    and answered from memory, written once per batch with one pipelined executemany per table;
    processed_events and the increments (daily counters, per content and per fan) are deferred to
    the batch's flush. Only the reply-time rows (message.* events) still run on SQL as live.
    Forgotten with the batch's rollback or the event's savepoint (discard_pending)."""

    def __init__(self, buffer: ContentBuffer) -> None:
        super().__init__(buffer)
        self._uow = _BatchUnitOfWork(BatchPool(buffer.conn))

    def transaction(self) -> "_BufferedTransaction":
        return _BufferedTransaction(self)

    async def _load(self) -> _State:
        st = _State()
        for r in await self.conn.fetch(f"SELECT {', '.join(_CONTENT_COLUMNS)} FROM analytics_content"):
            st.content[(r["creator"], r["content_id"])] = dict(r)
        for r in await self.conn.fetch("SELECT creator, message_uuid, content_id FROM analytics_sends"):
            st.sends.add((r["creator"], r["message_uuid"], r["content_id"]))
        for r in await self.conn.fetch(f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM analytics_messages"):
            st.messages[(r["creator"], r["message_uuid"])] = MessageFacts(
                primary_content=r["primary_content"], category=r["category"], vault=r["vault"],
                price_cents=r["price_cents"], band=r["band"])  # fmt: skip
        for r in await self.conn.fetch(f"SELECT {', '.join(_SALE_COLUMNS)} FROM analytics_sales"):
            st.add_sale(dict(r))
        return st

    async def flush(self) -> None:
        st = self.st
        if st is None or not st.dirty:
            return
        if st.dirty_content:
            await self.conn.executemany(
                _CONTENT_UPSERT, [tuple(st.content[k][c] for c in _CONTENT_COLUMNS) for k in st.dirty_content])
        if st.new_sends:
            await self.conn.executemany(_SEND_INSERT, st.new_sends)
        if st.new_messages:
            await self.conn.executemany(_MESSAGE_INSERT, st.new_messages)
        if st.dirty_sales:
            await self.conn.executemany(
                _SALE_UPSERT, [tuple(st.sales[k][c] for c in _SALE_COLUMNS) for k in st.dirty_sales])
        if st.bumps:
            # A sum of 0 still writes its row, as the per-event increments did (+1 then -1 = 0).
            args = []
            for (creator, day), counts in st.bumps.items():
                items = sorted((m, d, v) for (m, d), v in counts.items())
                args.append((creator, day, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]))
            await self.conn.executemany(_BUMP, args)
        st.dirty_content.clear()
        st.new_sends = []
        st.new_messages = []
        st.dirty_sales.clear()
        st.bumps.clear()



class _BatchUnitOfWork:
    """What PostgresAnalyticsTx uses of its unit of work, inside the rebuild's batch transaction
    (a handler's own transaction is a no-op there): the batch's connection, for the SQL paths."""

    def __init__(self, pool: BatchPool) -> None:
        self.conn = pool.conn

    async def add_outbox(self, event: Envelope) -> None:
        raise RuntimeError("a replayed projection never writes the outbox")


class _BufferedTransaction:
    # A plain context manager: entered once per event of the rebuild (no generator, no
    # unit of work to open and close around a transaction that is the batch's).
    def __init__(self, store: BufferedAnalyticsStore) -> None:
        self._store = store

    async def __aenter__(self) -> PostgresAnalyticsTx:
        store = self._store
        return _BufferedAnalyticsTx(store._uow, store.buffer, await store.state())  # type: ignore[arg-type]

    async def __aexit__(self, *exc: object) -> None:
        return None


class _BufferedAnalyticsTx(PostgresAnalyticsTx):
    # PostgresAnalyticsTx's statements, on the rows in memory (same results, same rows).

    def __init__(self, uow: PostgresUnitOfWork, buffer: ContentBuffer, st: _State) -> None:
        super().__init__(uow)
        self._buffer = buffer
        self.st = st

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        return self._buffer.first_time(handler, event_id, stream_seq)

    async def bump(self, creator: str, day: date, counts: Counts) -> None:
        summed = None
        for k, v in counts.items():
            if v:  # as _bump_args: a zero is no increment
                if summed is None:
                    summed = self.st.bumps[(creator, day)]  # increments commute with every other write
                summed[k] += v

    def _content_row(self, creator: str, content_id: uuid.UUID) -> dict[str, Any]:
        k = (creator, content_id)
        row = self.st.content.get(k)
        if row is None:
            row = self.st.content[k] = dict.fromkeys(_CONTENT_COLUMNS) | {
                "creator": creator, "content_id": content_id, "purchases": 0, "revenue_cents": 0}  # fmt: skip
        self.st.dirty_content.add(k)
        return row

    async def remember_content(self, creator: str, content_id: uuid.UUID, *, vault: str | None,
                               category: str | None, price_cents: int | None, overwrite: bool) -> None:  # fmt: skip
        known = (creator, content_id) in self.st.content
        row = self._content_row(creator, content_id)
        if overwrite or not known:  # _REMEMBER
            row.update(vault=vault, category=category, price_cents=price_cents)
        elif row["vault"] is None:
            row["vault"] = vault

    async def content(self, creator: str, content_id: uuid.UUID) -> ContentFacts | None:
        row = self.st.content.get((creator, content_id))
        return ContentFacts(vault=row["vault"], category=row["category"]) if row else None

    async def first_milestone(self, creator: str, content_id: uuid.UUID, milestone: str, day: date) -> bool:
        column = {"sent": "first_sent_on", "purchased": "first_purchased_on"}[milestone]
        row = self.st.content.get((creator, content_id))
        if row is not None and row[column] is not None:
            return False
        self._content_row(creator, content_id)[column] = day
        return True

    async def add_send(self, creator: str, message_uuid: str, content_id: uuid.UUID, fan_id: str, day: date) -> bool:
        k = (creator, message_uuid, content_id)
        if k in self.st.sends:
            return False
        self.st.sends.add(k)
        self.st.new_sends.append((creator, message_uuid, content_id, fan_id, day))
        return True

    async def add_message(self, creator: str, message_uuid: str, facts: MessageFacts, fan_id: str, day: date) -> bool:
        k = (creator, message_uuid)
        if k in self.st.messages:
            return False
        self.st.messages[k] = facts
        self.st.new_messages.append((creator, message_uuid, facts.primary_content, facts.category, facts.vault,
                                     facts.price_cents, facts.band, fan_id, day))  # fmt: skip
        return True

    async def message(self, creator: str, message_uuid: str) -> MessageFacts | None:
        return self.st.messages.get((creator, message_uuid))

    async def add_sale(self, creator: str, sale: SaleRecorded, event_id: uuid.UUID, day: date, *,
                       message_uuid: str | None) -> bool:  # fmt: skip
        k = (creator, sale.dedupe_key)
        if k in self.st.sales:
            return False
        self.st.add_sale({
            "creator": creator, "dedupe_key": sale.dedupe_key, "event_id": event_id, "kind": sale.kind,
            "gross_cents": sale.gross_cents, "day": day, "fan_id": sale.fan_id, "message_uuid": message_uuid,
            "content_id": sale.content_id, "attributed": False})  # fmt: skip
        self.st.dirty_sales.add(k)
        return True

    async def mark_attributed(self, creator: str, dedupe_key: str) -> None:
        row = self.st.sales.get((creator, dedupe_key))
        if row is not None:
            row["attributed"] = True
            self.st.dirty_sales.add((creator, dedupe_key))

    async def waiting_sales(self, creator: str, message_uuid: str) -> list[WaitingSale]:
        rows = [self.st.sales[(creator, d)] for d in self.st.by_message.get((creator, message_uuid), ())]
        rows = sorted((r for r in rows if not r["attributed"]), key=lambda r: (r["day"], r["dedupe_key"]))
        return [WaitingSale(dedupe_key=r["dedupe_key"], kind=r["kind"], gross_cents=r["gross_cents"], day=r["day"],
                            fan_id=r["fan_id"]) for r in rows]  # fmt: skip

    async def bump_content(self, creator: str, day: date, content_id: uuid.UUID, *, sends: int = 0,
                           purchases: int = 0, revenue_cents: int = 0) -> None:  # fmt: skip
        if sends:
            self._buffer.defer(_CONTENT_SENDS, (creator, day, content_id, sends))
        if purchases or revenue_cents:
            self._buffer.defer(_CONTENT_DAILY, (creator, day, content_id, purchases, revenue_cents))
            row = self._content_row(creator, content_id)
            row["purchases"] += purchases
            row["revenue_cents"] += revenue_cents

    # analytics_fans: revenue increments and the coalesce of handle / display name commute.
    async def bump_fan(self, creator: str, day: date, fan_id: str, *, sales: int = 0, purchases: int = 0,
                       revenue_cents: int = 0) -> None:  # fmt: skip
        self._buffer.defer(_FAN_DAILY, (creator, day, fan_id, sales, purchases, revenue_cents))
        self._buffer.defer(_FAN_REVENUE, (creator, fan_id, revenue_cents))

    async def remember_fan(self, creator: str, fan_id: str, handle: str | None, display_name: str | None) -> None:
        self._buffer.defer(_REMEMBER_FAN, (creator, fan_id, handle, display_name))


# Every table the analytics handler writes; a rebuild empties them (and its processed_events).
TABLES: tuple[str, ...] = (
    "analytics_daily", "analytics_content", "analytics_sends", "analytics_messages", "analytics_sales",
    "analytics_content_daily", "analytics_content_sends_daily", "analytics_fan_daily", "analytics_fans", "analytics_reply_waiting",
    "analytics_reply_times", "analytics_reply_hist",
)  # fmt: skip


async def reset(pool: asyncpg.Pool) -> None:
    """Forget every aggregate, so a replay of the stream rebuilds them from scratch."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        await conn.execute("DELETE FROM processed_events WHERE handler = 'analytics'")


# --------------------------------------------------------------------------- the query

_DAILY_METRICS = (a.GENERATED, a.APPROVED, a.UPLOADED, a.SENDS, a.OFFERS, a.PURCHASES, a.REVENUE_KIND)


# Top-N of a period by the threshold algorithm: candidates in order of their all-time revenue
# (an upper bound of any period's), their period totals read by index; stop once the N-th best
# period revenue beats the all-time revenue of every candidate not read yet.
_BATCH, _MAX_BATCHES, _SHORT_DAYS = 200, 5, 31
def _top_sql(daily: str, key: str, key_type: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """(period totals of given candidates, plain aggregation of the whole period) for one daily table."""
    sums = ", ".join(f"sum(d.{c})::bigint AS {c}" for c in columns)
    period = f"""SELECT u.creator, u.key AS {key}, {sums}
                 FROM unnest($3::text[], $4::{key_type}[]) AS u(creator, key)
                 JOIN {daily} d ON d.creator = u.creator AND d.{key} = u.key AND d.day BETWEEN $1 AND $2
                 GROUP BY 1, 2"""
    full = f"""SELECT d.creator, d.{key}, {sums} FROM {daily} d
               WHERE d.day BETWEEN $1 AND $2 AND ($3::text IS NULL OR d.creator = $3)
               GROUP BY d.creator, d.{key} HAVING sum(d.revenue_cents) > 0
               ORDER BY revenue_cents DESC, purchases DESC, d.{key} LIMIT $4"""
    return period, full


_TOP = {
    "fans": ("analytics_fans", "fan_id", *_top_sql("analytics_fan_daily", "fan_id", "text", ("sales", "purchases", "revenue_cents"))),
    "content": ("analytics_content", "content_id",
                *_top_sql("analytics_content_daily", "content_id", "uuid", ("purchases", "revenue_cents"))),
}  # fmt: skip


async def _top(pool: asyncpg.Pool, what: str, since: date, until: date, creator: str | None, n: int) -> list[Any]:
    table, key, period_sql, full_sql = _TOP[what]

    def rank(r: Any) -> tuple[Any, ...]:
        return (-r["revenue_cents"], -r["purchases"], str(r[key]))

    best: list[Any] = []
    async with pool.acquire() as conn:
        if (until - since).days < _SHORT_DAYS:  # a short period has few rows: aggregate them all
            return list(await conn.fetch(full_sql, since, until, creator, n))
        for batch in range(_MAX_BATCHES):
            candidates = await conn.fetch(
                f"""SELECT creator, {key}, revenue_cents FROM {table}
                    WHERE revenue_cents > 0 AND ($1::text IS NULL OR creator = $1)
                    ORDER BY revenue_cents DESC OFFSET $2 LIMIT $3""",
                creator, batch * _BATCH, _BATCH,
            )  # fmt: skip
            if candidates:
                rows = await conn.fetch(period_sql, since, until, [c["creator"] for c in candidates],
                                        [c[key] for c in candidates])  # fmt: skip
                best = sorted([*best, *(r for r in rows if r["revenue_cents"] > 0)], key=rank)[:n]
            if len(candidates) < _BATCH or (len(best) == n and best[-1]["revenue_cents"] > candidates[-1]["revenue_cents"]):
                return best
        return list(await conn.fetch(full_sql, since, until, creator, n))  # rare: aggregate everything


async def _median_reply(pool: asyncpg.Pool, since: date, until: date, creator: str | None) -> float | None:
    """percentile_cont(0.5) of the period's reply times, read from the one or two buckets it is in."""
    async with pool.acquire() as conn:
        counts = [(r["bucket"], r["n"]) for r in await conn.fetch(
            """SELECT bucket, sum(n)::bigint AS n FROM analytics_reply_hist
               WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR creator = $3) GROUP BY bucket ORDER BY bucket""",
            since, until, creator,
        )]  # fmt: skip
        total = sum(n for _, n in counts)
        if not total:
            return None
        values = []
        for r in a.median_ranks(total):
            bucket, offset = a.locate(r, counts)
            values.append(await conn.fetchval(
                """SELECT seconds FROM analytics_reply_times
                   WHERE bucket = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR creator = $4)
                   ORDER BY seconds OFFSET $5 LIMIT 1""",
                bucket, since, until, creator, offset,
            ))  # fmt: skip
        return sum(values) / len(values)


async def load_stats(pool: asyncpg.Pool, *, creator: str | None, since: date, until: date, top: int = 10) -> a.Stats:
    """The report for [since, until] (inclusive, UTC days), one creator or all of them. The
    independent queries run at once, each on its own connection."""
    args = (since, until, creator)
    where = "day BETWEEN $1 AND $2 AND ($3::text IS NULL OR creator = $3)"

    async def q(method: str, sql: str, *more: object) -> Any:
        async with pool.acquire() as conn:
            return await getattr(conn, method)(sql, *args, *more)

    sums, daily, median, top_sales, fans = await asyncio.gather(
        q("fetch", f"SELECT metric, dim, sum(value)::bigint AS v FROM analytics_daily WHERE {where} GROUP BY metric, dim"),
        q("fetch", f"""SELECT day, metric, dim, sum(value)::bigint AS v FROM analytics_daily
                       WHERE {where} AND metric = ANY($4::text[]) AND (dim = '' OR metric = $5)
                       GROUP BY day, metric, dim ORDER BY day""", list(_DAILY_METRICS), a.REVENUE_KIND),
        _median_reply(pool, since, until, creator),
        _top(pool, "content", since, until, creator, top),
        _top(pool, "fans", since, until, creator, top),
    )  # fmt: skip
    chosen = [(r["creator"], r["content_id"], r["purchases"], r["revenue_cents"]) for r in top_sales]
    if len(chosen) < top:  # fewer sold than asked for: the most sent unsold content fills up
        more = await q("fetch", f"""SELECT creator, content_id FROM analytics_content_sends_daily
                                    WHERE {where} AND NOT (content_id = ANY($5::uuid[]))
                                    GROUP BY creator, content_id ORDER BY sum(sends) DESC, content_id LIMIT $4""",
                       top - len(chosen), [c[1] for c in chosen])  # fmt: skip
        chosen += [(r["creator"], r["content_id"], 0, 0) for r in more]
    details, who = {}, {}
    if chosen:
        rows = await q("fetch", """SELECT u.creator, u.content_id, c.category, c.vault,
                                          (SELECT coalesce(sum(d.sends), 0) FROM analytics_content_sends_daily d
                                           WHERE d.creator = u.creator AND d.content_id = u.content_id
                                             AND d.day BETWEEN $1 AND $2)::bigint AS sends
                                   FROM unnest($4::text[], $5::uuid[]) AS u(creator, content_id)
                                   LEFT JOIN analytics_content c ON c.creator = u.creator AND c.content_id = u.content_id
                                   WHERE $3::text IS NULL OR u.creator = $3""",
                       [c[0] for c in chosen], [c[1] for c in chosen])  # fmt: skip
        details = {(r["creator"], r["content_id"]): r for r in rows}
    if fans:
        rows = await pool.fetch("""SELECT f.creator, f.fan_id, f.handle, f.display_name
                                   FROM unnest($1::text[], $2::text[]) AS u(creator, fan_id)
                                   JOIN analytics_fans f USING (creator, fan_id)""",
                                [f["creator"] for f in fans], [f["fan_id"] for f in fans])  # fmt: skip
        who = {(r["creator"], r["fan_id"]): r for r in rows}
    top_content = sorted(
        (a.TopContent(content_id=str(cid), category=details[(cr, cid)]["category"], vault=details[(cr, cid)]["vault"],
                      sends=details[(cr, cid)]["sends"], purchases=p, revenue_cents=r)
         for cr, cid, p, r in chosen),
        key=lambda c: (-c.revenue_cents, -c.purchases, -c.sends, c.content_id),
    )  # fmt: skip
    top_fans = [
        a.TopFan(fan_id=f["fan_id"], handle=(who.get((f["creator"], f["fan_id"])) or {}).get("handle"),
                 display_name=(who.get((f["creator"], f["fan_id"])) or {}).get("display_name"),
                 sales=f["sales"], purchases=f["purchases"], revenue_cents=f["revenue_cents"])  # fmt: skip
        for f in fans
    ]

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
        top_content=top_content,
        top_fans=top_fans,
    )


def _sorted(d: dict[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))
