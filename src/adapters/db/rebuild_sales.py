"""The sales handler's store for `vaultline replay --rebuild`: the same port as PostgresSalesTx
(handlers.sales.SalesTx), over rows held in memory and written once per batch.

The rebuild schema starts empty and, while this store runs, only this store writes fans, sends,
sales and sale_keys, so the rows in memory are the whole truth: each query of PostgresSalesTx
is answered from them (same predicates, same NULL rules: COALESCE, GREATEST/LEAST ignore NULL,
`=` never matches NULL), each write changes them and marks the row dirty. Content counters go
through the tracker's ContentBuffer (a staged row, committed with the handler's block), so a
purchase no longer forces the buffer to flush and re-read. Dirty rows are written with one
pipelined upsert per table when the ContentBuffer flushes (the end of the batch, or before a
projector that runs on SQL). Whenever the database may hold something else (a savepoint or the
batch rolled back, a SQL projector ran), the memory is dropped and read again from the
database on next use: those are the rare paths, the common one costs no round trip."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from vaultline.adapters.db.rebuild import BufferedTables, ContentBuffer, _BufferedUnitOfWork
from vaultline.adapters.db.sales import _known, _send
from vaultline.domain import sends as rules
from vaultline.domain.retry import TransientError
from vaultline.events import NAMESPACE, Envelope, MediaSent, SaleRecorded, derived_id
from vaultline.handlers.sales import FanFacts

FAN_COLUMNS = ("creator", "platform", "fan_id", "handle", "display_name", "first_seen_at", "last_message_at",
               "lifetime_spend_cents", "purchases", "last_purchase_at", "followed_at", "subscribed_at")  # fmt: skip
SEND_COLUMNS = ("id", "attempt_id", "content_id", "creator", "platform", "fan_id", "media_uuid", "message_uuid",
                "price_cents", "text", "status", "generation", "forced", "reason", "sent_by", "reserved_at",
                "sent_at", "purchased_at")  # fmt: skip
SALE_COLUMNS = ("id", "creator", "platform", "dedupe_key", "kind", "gross_cents", "net_cents", "currency", "fan_id",
                "route_uuid", "message_uuid", "post_uuid", "occurred_at", "source", "sources", "matched_send_id",
                "matched_content_id", "matched_message_uuid", "event_id")  # fmt: skip


def _upsert_sql(table: str, cols: tuple[str, ...], key: tuple[str, ...]) -> str:
    values = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")  # fmt: skip


_FANS_SQL = _upsert_sql("fans", FAN_COLUMNS, ("creator", "platform", "fan_id")) + ", updated_at = now()"
_SENDS_SQL = _upsert_sql("sends", SEND_COLUMNS, ("id",)) + ", updated_at = now()"
_SALES_SQL = _upsert_sql("sales", SALE_COLUMNS, ("id",))
_KEYS_SQL = "INSERT INTO sale_keys (creator, dedupe_key, sale_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"


def _window(at: datetime) -> int:
    """Which SALE_MATCH_WINDOW-long slice of time `at` falls in (sales_by_fan's last key)."""
    return int(at.timestamp() // rules.SALE_MATCH_WINDOW.total_seconds())


def _least(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


class _State:
    """The four tables as rows, with look-ups for the handler's queries. The look-ups are
    supersets (a key is added whenever a row gets that value, never removed): every answer is
    filtered again on the rows themselves."""

    def __init__(self) -> None:
        self.fans: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.sends: dict[uuid.UUID, dict[str, Any]] = {}
        self.sales: dict[uuid.UUID, dict[str, Any]] = {}
        self.keys: dict[tuple[str, str], uuid.UUID] = {}
        self.order: dict[uuid.UUID, int] = {}  # sales in insertion order (the table's heap order)
        self.sends_by_cpf: defaultdict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
        self.sends_by_fan: defaultdict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
        self.sends_by_msg: defaultdict[tuple[Any, ...], list[uuid.UUID]] = defaultdict(list)
        self.sales_by_id: defaultdict[tuple[Any, ...], set[uuid.UUID]] = defaultdict(set)
        self.sales_by_fan: defaultdict[tuple[Any, ...], set[uuid.UUID]] = defaultdict(set)
        self.dirty_fans: set[tuple[str, str, str]] = set()
        self.dirty_sends: set[uuid.UUID] = set()
        self.dirty_sales: set[uuid.UUID] = set()
        self.new_keys: list[tuple[str, str, uuid.UUID]] = []

    def add_send(self, row: dict[str, Any]) -> None:
        self.sends[row["id"]] = row
        self.sends_by_cpf[(row["content_id"], row["platform"], row["fan_id"])].append(row["id"])
        self.sends_by_fan[(row["creator"], row["platform"], row["fan_id"])].append(row["id"])
        if row["message_uuid"] is not None:
            self.sends_by_msg[(row["creator"], row["platform"], row["message_uuid"])].append(row["id"])

    def add_sale(self, row: dict[str, Any]) -> None:
        self.sales[row["id"]] = row
        self.order.setdefault(row["id"], len(self.order))
        self.index_sale(row)

    def index_sale(self, row: dict[str, Any]) -> None:
        cp = (row["creator"], row["platform"])
        for c in ("route_uuid", "message_uuid", "post_uuid", "matched_message_uuid"):
            if row[c] is not None:
                self.sales_by_id[(*cp, row[c])].add(row["id"])
        if row["fan_id"] is not None:  # by window too: a fan buying at one price often has many
            self.sales_by_fan[(*cp, row["fan_id"], row["gross_cents"], _window(row["occurred_at"]))].add(row["id"])

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_fans or self.dirty_sends or self.dirty_sales or self.new_keys)


class BufferedSalesTx:
    """handlers.sales.SalesTx over _State and the ContentBuffer's unit of work."""

    def __init__(self, st: _State, uow: _BufferedUnitOfWork) -> None:
        self.st, self.uow = st, uow

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        return await self.uow.first_time(handler, event_id, stream_seq)

    async def lock(self, key: str) -> None:
        return None  # one feeder, one event at a time

    def _upsert_fan(self, creator: str, platform: str, fan_id: str, seen_at: datetime | None) -> dict[str, Any]:
        # adapters.db.sends.upsert_fan
        seen = seen_at or datetime.now(timezone.utc)
        k = (creator, platform, fan_id)
        row = self.st.fans.get(k)
        if row is None:
            row = self.st.fans[k] = {c: None for c in FAN_COLUMNS} | {
                "creator": creator, "platform": platform, "fan_id": fan_id, "first_seen_at": seen,
                "lifetime_spend_cents": 0, "purchases": 0}  # fmt: skip
        else:
            row["first_seen_at"] = _least(row["first_seen_at"], seen)
        self.st.dirty_fans.add(k)
        return row

    async def fan_seen(self, f: FanFacts) -> None:
        row = self._upsert_fan(f.creator, f.platform, f.fan_id, f.seen_at)
        if f.ref.handle is not None:
            row["handle"] = f.ref.handle
        if f.ref.display_name is not None:
            row["display_name"] = f.ref.display_name
        row["last_message_at"] = _greatest(row["last_message_at"], f.message_at)
        row["followed_at"] = _least(row["followed_at"], f.followed_at)
        row["subscribed_at"] = _least(row["subscribed_at"], f.subscribed_at)

    async def record_send(self, event: Envelope, p: MediaSent) -> None:
        st = self.st
        same = [st.sends[i] for i in st.sends_by_cpf.get((p.content_id, p.platform, p.fan_id), ())]
        if p.message_uuid is not None and any(s["message_uuid"] == p.message_uuid for s in same):
            return
        self._upsert_fan(event.creator, p.platform, p.fan_id, event.occurred_at)
        live = [s["generation"] for s in same if s["status"] != "failed"]
        content = await self.uow.content.get(p.content_id)
        st.add_send({
            "id": derived_id(event.event_id, "send-row"), "attempt_id": uuid.uuid5(NAMESPACE, f"attempt:{p.message_uuid}"),
            "content_id": p.content_id, "creator": event.creator, "platform": p.platform, "fan_id": p.fan_id,
            "media_uuid": content.get("fanvue_media_uuid") if content else None, "message_uuid": p.message_uuid,
            "price_cents": p.price_cents, "text": p.text, "status": "sent", "generation": max(live) + 1 if live else 0,
            "forced": p.forced, "reason": p.reason, "sent_by": p.sent_by, "reserved_at": event.occurred_at,
            "sent_at": event.occurred_at, "purchased_at": None,
        })  # fmt: skip
        st.dirty_sends.add(derived_id(event.event_id, "send-row"))

    async def sale_for_key(self, creator: str, dedupe_key: str) -> uuid.UUID | None:
        return self.st.keys.get((creator, dedupe_key))

    async def candidate_sales(self, creator: str, platform: str, report: rules.SaleReport) -> list[rules.KnownSale]:
        st, ids = self.st, report.ids
        maybe: set[uuid.UUID] = set()
        for i in ids:
            maybe |= st.sales_by_id.get((creator, platform, i), set())
        lo, hi = report.sold_at - rules.SALE_MATCH_WINDOW, report.sold_at + rules.SALE_MATCH_WINDOW
        if report.fan_id is not None:
            for w in range(_window(lo), _window(hi) + 1):
                maybe |= st.sales_by_fan.get((creator, platform, report.fan_id, report.gross_cents, w), set())

        def hit(r: dict[str, Any]) -> bool:  # PostgresSalesTx.candidate_sales's WHERE
            if r["creator"] != creator or r["platform"] != platform:
                return False
            if ids and any(r[c] in ids for c in ("route_uuid", "message_uuid", "post_uuid", "matched_message_uuid")):
                return True
            return (r["fan_id"] is not None and r["fan_id"] == report.fan_id and r["gross_cents"] == report.gross_cents
                    and lo <= r["occurred_at"] <= hi)  # fmt: skip

        rows = [st.sales[i] for i in sorted(maybe, key=st.order.__getitem__) if i in st.sales]
        return [_known(r) for r in rows if hit(r)]

    async def sends_by_message(self, creator: str, platform: str, ids: set[str]) -> list[rules.SendForSale]:
        st = self.st
        found = {i for m in ids for i in st.sends_by_msg.get((creator, platform, m), ())}
        rows = [st.sends[i] for i in sorted(found)]
        return [_send(r) for r in rows if r["message_uuid"] in ids and r["status"] == "sent"]

    async def fan_sends(self, creator: str, platform: str, fan_id: str) -> list[rules.SendForSale]:
        st = self.st
        rows = [st.sends[i] for i in sorted(set(st.sends_by_fan.get((creator, platform, fan_id), ())))]
        return [_send(r) for r in rows if r["status"] == "sent" and r["purchased_at"] is None]

    async def insert_sale(self, sale_id: uuid.UUID, event: Envelope, p: SaleRecorded) -> None:
        st = self.st
        if sale_id in st.sales or (event.creator, p.dedupe_key) in st.keys:  # the table's unique keys
            raise ValueError(f"sale {sale_id} / {p.dedupe_key!r} already exists")
        st.add_sale({
            "id": sale_id, "creator": event.creator, "platform": p.platform, "dedupe_key": p.dedupe_key,
            "kind": p.kind, "gross_cents": p.gross_cents, "net_cents": p.net_cents, "currency": p.currency,
            "fan_id": p.fan_id, "route_uuid": p.route_uuid, "message_uuid": p.message_uuid, "post_uuid": p.post_uuid,
            "occurred_at": p.sold_at, "source": p.source, "sources": [p.source], "matched_send_id": None,
            "matched_content_id": None, "matched_message_uuid": None, "event_id": event.event_id,
        })  # fmt: skip
        st.dirty_sales.add(sale_id)
        st.keys[(event.creator, p.dedupe_key)] = sale_id
        st.new_keys.append((event.creator, p.dedupe_key, sale_id))

    async def merge_into(self, sale_id: uuid.UUID, creator: str, p: SaleRecorded) -> None:
        st = self.st
        row = st.sales.get(sale_id)
        if row is not None:
            if p.source not in row["sources"]:
                row["sources"] = [*row["sources"], p.source]
            for c, v in (("route_uuid", p.route_uuid), ("message_uuid", p.message_uuid), ("post_uuid", p.post_uuid),
                         ("net_cents", p.net_cents), ("fan_id", p.fan_id)):  # fmt: skip
                if row[c] is None:
                    row[c] = v
            st.index_sale(row)
            st.dirty_sales.add(sale_id)
        if (creator, p.dedupe_key) not in st.keys:
            st.keys[(creator, p.dedupe_key)] = sale_id
            st.new_keys.append((creator, p.dedupe_key, sale_id))

    async def apply_purchase(
        self, sale_id: uuid.UUID, sends: list[rules.SendForSale], gross_cents: int, sold_at: datetime
    ) -> None:
        st = self.st
        ordered = sorted(sends, key=lambda s: str(s.content_id))
        for s, cents in zip(ordered, rules.split_revenue(gross_cents, len(ordered))):
            row = await self.uow.content.get(s.content_id)
            if row is None:
                raise TransientError(f"content {s.content_id} is not projected yet")
            await self.uow.content.upsert(row | {"times_purchased": (row.get("times_purchased") or 0) + 1,
                                                 "revenue_cents": (row.get("revenue_cents") or 0) + cents})  # fmt: skip
            send = st.sends.get(s.send_id)
            if send is not None and send["purchased_at"] is None:
                send["purchased_at"] = sold_at
                st.dirty_sends.add(s.send_id)
        first = ordered[0]
        sale = st.sales.get(sale_id)
        if sale is not None:
            sale.update(matched_send_id=first.send_id, matched_content_id=first.content_id,
                        matched_message_uuid=first.message_uuid)  # fmt: skip
            st.index_sale(sale)
            st.dirty_sales.add(sale_id)

    async def add_fan_spend(
        self, creator: str, platform: str, fan_id: str, gross_cents: int, sold_at: datetime, purchase: bool
    ) -> None:
        row = self.st.fans.get((creator, platform, fan_id))
        if row is None:
            return
        row["lifetime_spend_cents"] += gross_cents
        row["purchases"] += 1 if purchase else 0
        row["last_purchase_at"] = _greatest(row["last_purchase_at"], sold_at)
        self.st.dirty_fans.add((creator, platform, fan_id))


class BufferedSalesStore(BufferedTables[_State]):
    """handlers.sales.SalesStore for the rebuild; flushed, cleared and rolled back with `buffer`."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[BufferedSalesTx]:
        st = await self.state()
        # A failure inside leaves changed rows behind: the rebuild then rolls back the event's
        # savepoint or the batch, and discard_pending/rollback drop them.
        async with self.buffer.uow() as uow:
            yield BufferedSalesTx(st, uow)

    async def _load(self) -> _State:
        st = _State()
        for r in await self.conn.fetch("SELECT * FROM fans"):
            st.fans[(r["creator"], r["platform"], r["fan_id"])] = {c: r[c] for c in FAN_COLUMNS}
        for r in await self.conn.fetch("SELECT * FROM sends ORDER BY id"):
            st.add_send({c: r[c] for c in SEND_COLUMNS})
        for r in await self.conn.fetch("SELECT * FROM sales ORDER BY ctid"):
            st.add_sale({c: (list(r[c]) if c == "sources" else r[c]) for c in SALE_COLUMNS})
        for r in await self.conn.fetch("SELECT creator, dedupe_key, sale_id FROM sale_keys"):
            st.keys[(r["creator"], r["dedupe_key"])] = r["sale_id"]
        return st

    async def flush(self) -> None:
        st = self.st
        if st is None or not st.dirty:
            return
        # executemany pipelines each table's rows: one round trip per table. sales before
        # sale_keys (foreign key).
        for sql, rows, cols in ((_FANS_SQL, [st.fans[k] for k in st.dirty_fans], FAN_COLUMNS),
                                (_SENDS_SQL, [st.sends[k] for k in st.dirty_sends], SEND_COLUMNS),
                                (_SALES_SQL, [st.sales[k] for k in st.dirty_sales], SALE_COLUMNS)):  # fmt: skip
            if rows:
                await self.conn.executemany(sql, [tuple(r[c] for c in cols) for r in rows])
        if st.new_keys:
            await self.conn.executemany(_KEYS_SQL, st.new_keys)
        st.dirty_fans.clear()
        st.dirty_sends.clear()
        st.dirty_sales.clear()
        st.new_keys = []

    def clear(self) -> None:
        """A projector ran on SQL (after a flush): it may have changed these tables."""
        if self.st is not None and not self.st.dirty:
            self.st = None
