"""PostgreSQL side of `vaultline replay --rebuild`: a fresh schema with the migrations applied,
a batching "pool" that feeds the real handlers' units of work into it, the row-by-row
comparison with the live tables, and the schema swap.

Which handlers and tables take part is declared once, in bootstrap.REPLAYABLE (TableSpec
below); which tables are deliberately not compared, and why, is NOT_COMPARED here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Generic, TypeVar

import asyncpg

from vaultline.adapters.db import _init_connection, content_columns, content_upsert_sql
from vaultline.adapters.db.migrate import migrate

# Tables that are operator input, workflow state of side-effecting handlers or bookkeeping:
# not derived from the EVENTS stream, so a rebuild cannot (and must not) reproduce them.
# On --swap they are carried over from the live schema unchanged (processed_events is merged).
NOT_COMPARED: dict[str, str] = {
    "schema_migrations": "bookkeeping of applied migrations (the rebuild applies the same files)",
    "processed_events": "idempotency bookkeeping; the rebuild writes its own rows (merged on --swap)",
    "outbox": "operator changes waiting to become events (the source of events, not a projection)",
    "delivery_failures": "bookkeeping of failed deliveries",
    "dead_letters": "operator-handled dead letters (from the ADVISORIES stream, not EVENTS)",
    "outbox_dead_letters": "undecodable outbox rows set aside for the operator",
    "platform_tokens": "operator input: OAuth tokens",
    "fanvue_accounts": "operator input: connected Fanvue accounts",
    "fanvue_unrouted_webhooks": "webhooks received for no known account (input, not derived)",
    "fanvue_sync_state": "the sync loop's cursors (bookkeeping)",
    "fanvue_open_ppv": "the sync loop's working set of open PPV messages (bookkeeping)",
    "uploads": "the upload handler's resumable platform workflow (steps, part ids, the feed post; platform side "
    "effects are never replayed); its visible outcome, content.status / fanvue_media_uuid / vault / url, comes "
    "from media.* events through the tracker and is compared",
    "ingest_problems": "files the watcher could not ingest (never became events)",
    "rate_buckets": "shared Fanvue request budget (bookkeeping)",
    "send_guard_versions": "the send guard's per-fan version for concurrent senders (bookkeeping)",
}

# Generated on insert (ids, clocks of the projection itself): never compared.
BOOKKEEPING_COLUMNS: frozenset[str] = frozenset({"created_at", "updated_at", "processed_at", "recorded_at"})


@dataclass(frozen=True)
class TableSpec:
    """A projected table: compared by `key`; `ignore` = columns the rebuild cannot reproduce
    (generated ids, operator input); `where` = which rows are derived from events;
    `carry` = SQL run on --swap to keep the live schema's operator input ({old}, {new} = schemas)."""

    name: str
    key: tuple[str, ...]
    ignore: tuple[str, ...] = ()
    where: str | None = None
    carry: tuple[str, ...] = ()


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _q(ident: str) -> str:
    if not _IDENT.match(ident):
        raise ValueError(f"not a plain identifier: {ident!r}")
    return f'"{ident}"'


def stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%d_%H%M%S_%f")


async def live_schema(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT current_schema()"))


async def create_rebuild_schema(database_url: str, name: str) -> None:
    """CREATE SCHEMA name and apply every migration inside it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA {_q(name)}")
    finally:
        await conn.close()
    await migrate(database_url, schema=name)


async def drop_schema(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {_q(name)} CASCADE")


# --------------------------------------------------------------------------- batching


class _NoTransaction:
    async def start(self) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...

    async def __aenter__(self) -> "_NoTransaction":
        return self

    async def __aexit__(self, *exc: object) -> None: ...


class _BatchConnection:
    """The batch's connection as the handlers see it: their transactions are no-ops inside the
    batch's one transaction (the rebuild opens a savepoint per event when it must isolate one)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.raw = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def transaction(self) -> Any:
        return _NoTransaction()


class BatchPool:
    """A pool look-alike with one connection, for PostgresUnitOfWork and the stores built on a
    pool: the real handler code runs unchanged, many events per transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = _BatchConnection(conn)

    async def acquire(self) -> _BatchConnection:
        return self.conn

    async def release(self, conn: object) -> None:
        return None

    async def execute(self, *a: Any) -> Any:
        return await self.conn.execute(*a)

    async def fetch(self, *a: Any) -> Any:
        return await self.conn.fetch(*a)

    async def fetchrow(self, *a: Any) -> Any:
        return await self.conn.fetchrow(*a)

    async def fetchval(self, *a: Any) -> Any:
        return await self.conn.fetchval(*a)


async def connect_schema(database_url: str, schema: str) -> asyncpg.Connection:
    # A rebuild that dies is thrown away and run again from the stream: its commits need not
    # wait for the disk.
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema, "synchronous_commit": "off"})
    await _init_connection(conn)
    return conn


# --------------------------------------------------------------------------- comparison


@dataclass
class TableDiff:
    table: str
    live_rows: int
    rebuilt_rows: int
    differences: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"live_rows": self.live_rows, "rebuilt_rows": self.rebuilt_rows, "differences": len(self.differences)}


def _plain(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


async def compare_table(conn: asyncpg.Connection, spec: TableSpec, live: str, rebuilt: str) -> TableDiff:
    cols = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
        "ORDER BY ordinal_position",
        live, spec.name,
    )  # fmt: skip
    skip = BOOKKEEPING_COLUMNS | set(spec.ignore)
    names = [c["column_name"] for c in cols if c["column_name"] not in skip]
    # json has no equality operator; compare its jsonb form.
    exprs = [f"{_q(c['column_name'])}::jsonb" if c["data_type"] == "json" else _q(c["column_name"])
             for c in cols if c["column_name"] not in skip]  # fmt: skip
    select = ", ".join(f"{e} AS {_q(n)}" for e, n in zip(exprs, names))
    where = f" WHERE {spec.where}" if spec.where else ""

    def source(schema: str) -> str:
        return f"SELECT {select} FROM {_q(schema)}.{_q(spec.name)}{where}"

    counts = [await conn.fetchval(f"SELECT count(*) FROM ({source(s)}) t") for s in (live, rebuilt)]
    only_live = await conn.fetch(f"{source(live)} EXCEPT ALL {source(rebuilt)}")
    only_rebuilt = await conn.fetch(f"{source(rebuilt)} EXCEPT ALL {source(live)}")

    def keyed(rows: Sequence[asyncpg.Record]) -> dict[str, dict[str, Any]]:
        return {json.dumps([_plain(r[k]) for k in spec.key]): {n: _plain(r[n]) for n in names} for r in rows}

    a, b = keyed(only_live), keyed(only_rebuilt)
    diffs: list[dict[str, Any]] = []
    for k in sorted(set(a) | set(b)):
        key = dict(zip(spec.key, json.loads(k)))
        if k not in b:
            diffs.append({"key": key, "kind": "only_live", "live": a[k]})
        elif k not in a:
            diffs.append({"key": key, "kind": "only_rebuilt", "rebuilt": b[k]})
        else:
            changed = {n: {"live": a[k][n], "rebuilt": b[k][n]} for n in names if a[k][n] != b[k][n]}
            diffs.append({"key": key, "kind": "changed", "columns": changed})
    return TableDiff(spec.name, counts[0], counts[1], diffs)


# --------------------------------------------------------------------------- swap


async def swap(conn: asyncpg.Connection, specs: Sequence[TableSpec], live: str, rebuilt: str, backup: str) -> None:
    """In one transaction: the live schema becomes `backup`, the rebuilt one takes its name.
    Tables outside the projections (NOT_COMPARED and any other) move over from the old live
    schema unchanged; processed_events rows of handlers not replayed are merged; each spec's
    `carry` keeps the operator input of its rows."""
    projected = {s.name for s in specs}
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(f'{_q(live)}.{_q(t)}' for t in sorted(projected))} IN EXCLUSIVE MODE")
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", live)]
        for t in tables:
            if t in projected or t in ("processed_events", "schema_migrations"):
                continue
            await conn.execute(f"DROP TABLE IF EXISTS {_q(rebuilt)}.{_q(t)} CASCADE")
            await conn.execute(f"ALTER TABLE {_q(live)}.{_q(t)} SET SCHEMA {_q(rebuilt)}")
        await conn.execute(
            f"INSERT INTO {_q(rebuilt)}.processed_events SELECT * FROM {_q(live)}.processed_events ON CONFLICT DO NOTHING"
        )
        for s in specs:
            for sql in s.carry:
                await conn.execute(sql.format(old=_q(live), new=_q(rebuilt)))
        await conn.execute(f"ALTER SCHEMA {_q(live)} RENAME TO {_q(backup)}")
        await conn.execute(f"ALTER SCHEMA {_q(rebuilt)} RENAME TO {_q(live)}")


# --------------------------------------------------------------------------- bulk content


class _BufferedContent:
    def __init__(self, buf: "ContentBuffer", staged: dict[Any, dict[str, Any]]) -> None:
        self._buf, self._staged = buf, staged

    async def get(self, content_id: Any, *, for_update: bool = False) -> dict[str, Any] | None:
        if content_id in self._staged:
            return self._staged[content_id]
        if content_id not in self._buf.rows:
            await self._buf.prefetch([content_id, *self._buf.expected])
        return self._buf.rows[content_id]

    async def upsert(self, row: dict[str, Any]) -> None:
        self._staged[row["id"]] = row


class _BufferedUnitOfWork:
    """The tracker's unit of work over ContentBuffer: same port (first_time, content.get/upsert),
    effects staged and committed into the buffer only when the handler's block exits cleanly."""

    def __init__(self, buf: "ContentBuffer") -> None:
        self._buf = buf
        self._staged: dict[Any, dict[str, Any]] = {}
        self._processed: list[tuple[str, Any, int | None]] = []
        self.content = _BufferedContent(buf, self._staged)

    async def __aenter__(self) -> "_BufferedUnitOfWork":
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._buf.commit(self._staged, self._processed)

    async def first_time(self, handler: str, event_id: Any, stream_seq: int | None = None) -> bool:
        if (handler, event_id) in self._buf.done:
            return False
        self._processed.append((handler, event_id, stream_seq))
        return True

    async def add_outbox(self, event: Any) -> None:
        raise RuntimeError("a replayed projection never writes the outbox")


class ContentBuffer:
    """Content rows of a rebuild held in memory between SQL projections: the tracker's events
    cost no round trip (rows of a batch are read with one query, written with one pipelined
    executemany per column set, processed_events with one COPY). `flush` before any handler
    that reads or writes content with SQL, `clear` after it (it may have changed rows)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.rows: dict[Any, dict[str, Any] | None] = {}
        self.dirty: set[Any] = set()
        self.processed: list[tuple[str, Any, int | None]] = []
        self.done: set[tuple[str, Any]] = set()
        # Everything done since the batch's transaction began (flushes inside it included): what
        # `rollback` forgets when that transaction rolls back.
        self.batch_done: list[tuple[str, Any]] = []
        self.expected: list[Any] = []  # the batch's keys: a miss reads all missing ones at once
        # Writes another bulk projector leaves for the flush (commutative ones: counter increments).
        self.deferred: list[tuple[str, tuple[Any, ...]]] = []
        # Other buffered stores of the rebuild (BufferedTables): flushed, cleared and rolled back
        # with this one, so the feeding loop keeps one protocol.
        self.companions: list[BufferedTables[Any]] = []
        self.schema: str | None = None
        self._columns: dict[tuple[str, ...], tuple[tuple[str, ...], Callable[[dict[str, Any]], tuple[Any, ...]]]] = {}

    async def _schema(self) -> str:
        if self.schema is None:
            self.schema = str(await self.conn.fetchval("SELECT current_schema()"))
        return self.schema

    def uow(self) -> _BufferedUnitOfWork:
        return _BufferedUnitOfWork(self)

    def commit(self, staged: dict[Any, dict[str, Any]], processed: list[tuple[str, Any, int | None]]) -> None:
        if staged:
            self.rows.update(staged)
            self.dirty.update(staged)
        for p in processed:  # (one per event)
            self.processed.append(p)
            key = (p[0], p[1])
            self.done.add(key)
            self.batch_done.append(key)

    def first_time(self, handler: str, event_id: Any, stream_seq: int | None = None) -> bool:
        """processed_events for a bulk projector outside the tracker's unit of work (written by
        flush, forgotten by discard_pending / rollback)."""
        key = (handler, event_id)
        if key in self.done:
            return False
        self.processed.append((handler, event_id, stream_seq))  # as commit({}, [...]), once per event
        self.done.add(key)
        self.batch_done.append(key)
        return True

    def defer(self, sql: str, args: tuple[Any, ...]) -> None:
        """Run at the next flush: statements of one SQL in the order deferred (one pipelined
        executemany), so statements of different SQL must commute."""
        self.deferred.append((sql, args))

    async def flush_deferred(self) -> None:
        deferred: dict[str, list[tuple[Any, ...]]] = {}
        for sql, args in self.deferred:
            deferred.setdefault(sql, []).append(args)
        for sql, values in deferred.items():
            await self.conn.executemany(sql, values)
        self.deferred = []

    async def prefetch(self, ids: Sequence[Any]) -> None:
        want = list({i for i in ids if i not in self.rows})
        if not want:
            return
        for r in await self.conn.fetch("SELECT * FROM content WHERE id = ANY($1::uuid[])", want):
            self.rows[r["id"]] = dict(r)
        for i in want:
            self.rows.setdefault(i, None)

    async def flush(self) -> None:
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        columns = self._columns
        for i in self.dirty:
            row = self.rows[i]
            assert row is not None
            shape = columns.get(keys := tuple(row))  # rows come in a few shapes: worked out once each
            if shape is None:
                cols = content_columns(row)
                get = itemgetter(*cols) if len(cols) > 1 else (lambda r, c=cols[0]: (r[c],))
                shape = columns[keys] = (cols, get)
            groups.setdefault(shape[0], []).append(shape[1](row))
        for cols, values in groups.items():
            await self.conn.executemany(content_upsert_sql(cols), values)  # pipelined: one round trip
        for other in self.companions:
            await other.flush()
        await self.flush_deferred()
        if self.processed:
            await self.conn.copy_records_to_table(
                "processed_events", records=self.processed, columns=["handler", "event_id", "stream_seq"],
                schema_name=await self._schema(),
            )  # fmt: skip
        self.dirty.clear()
        self.processed = []

    def committed(self) -> None:
        """The batch's transaction committed: nothing of it can be rolled back any more."""
        self.batch_done = []

    def clear(self) -> None:
        """Forget cached rows SQL may have changed (rows not flushed yet stay)."""
        self.rows = {i: self.rows[i] for i in self.dirty}
        for other in self.companions:
            other.clear()

    def discard_pending(self) -> None:
        """Forget what is not flushed yet (its savepoint rolled back)."""
        self.done.difference_update((h, e) for h, e, _ in self.processed)
        self.processed = []
        self.deferred = []
        self.dirty.clear()
        self.rows.clear()
        for other in self.companions:
            other.discard_pending()

    def rollback(self) -> None:
        """The batch's transaction rolled back: forget everything it did."""
        self.rows.clear()
        self.dirty.clear()
        self.processed = []
        self.deferred = []
        self.done.difference_update(self.batch_done)
        self.batch_done = []
        for other in self.companions:
            other.rollback()


S = TypeVar("S")


class BufferedTables(Generic[S]):
    """Rows of a projection's tables held in memory during a rebuild, beside a ContentBuffer
    (rebuild_sales.BufferedSalesStore, analytics.BufferedAnalyticsStore): read once (`_load`),
    written once per batch (`flush`, called by the buffer's), forgotten with the batch's
    rollback or an event's savepoint and then read again."""

    def __init__(self, buffer: ContentBuffer) -> None:
        self.buffer = buffer
        self.conn: asyncpg.Connection = buffer.conn
        self.st: S | None = None
        buffer.companions.append(self)

    async def state(self) -> S:
        if self.st is None:
            self.st = await self._load()
        return self.st

    async def _load(self) -> S:
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """A projector ran on SQL (after a flush). By default the rows in memory stay true: no
        other projector writes these tables."""

    def discard_pending(self) -> None:
        self.st = None

    def rollback(self) -> None:
        self.st = None
