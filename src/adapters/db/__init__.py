"""PostgreSQL adapter (asyncpg): pool, unit of work, repositories.

A unit of work is one transaction. Handlers insert their processed_events row and their
effect in it, and the message is acked only after it commits: at-least-once delivery,
exactly-once effect."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from vaultline.adapters.db.migrate import migrate
from vaultline.events import Envelope

CONTENT_COLUMNS: tuple[str, ...] = (
    "id", "creator", "status", "original_filename", "cropped_filename", "local_path", "sha256",
    "phash", "near_duplicate_of", "phash_distance", "raw_key", "cropped_key", "review_key",
    "requested_crop_mode", "crop_mode_used", "face_found", "faces", "cut_y", "crop_box",
    "crop_confidence", "fallback_reason", "needs_manual_crop", "width", "height", "comfy",
    "fanvue_media_uuid", "fanvue_vault", "fanvue_url", "platform", "vault", "category", "tags",
    "description", "price_cents", "reject_reason", "error", "times_purchased", "revenue_cents",
    "generated_at", "uploaded_at", "status_at", "last_event_id", "output_check", "output_check_faces",
)  # fmt: skip
_JSON_COLUMNS = {"crop_box", "comfy"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, instead of asyncpg's (pg_advisory_unlock_all, CLOSE ALL,
    UNLISTEN *, RESET ALL): that is one more round trip for every pooled query, doubling the
    cost of a short one. Our pooled sessions keep nothing past their use: asyncpg rolls back an
    open transaction before this runs; settings are SET LOCAL; the one session lock taken on a
    pooled connection (uploads.exclusive) is unlocked by its taker or its connection terminated;
    the relay unlistens the same way (tests/integration/test_db_pool.py holds all three)."""


def still_open(conn: asyncpg.Connection) -> bool:
    """False once the connection is closed (a closed pooled connection's proxy is detached and
    raises on every call, is_closed() included: the pool has taken it back)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


async def create_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None
) -> asyncpg.Pool:
    """`schema`: every connection's search_path (replay --rebuild projects into a fresh one)."""
    return await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_no_session_state,
        server_settings={"search_path": schema} if schema else None,
    )  # fmt: skip


class PostgresContentRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, content_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
        if for_update:
            # Row locks cannot guard a row that does not exist yet; two workers projecting the
            # first events of one image would race. A transaction-scoped advisory lock can.
            await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(content_id))
        row = await self._conn.fetchrow("SELECT * FROM content WHERE id = $1", content_id)
        return dict(row) if row else None

    async def upsert(self, row: dict[str, Any]) -> None:
        cols = content_columns(row)
        await self._conn.execute(content_upsert_sql(cols), *[row[c] for c in cols])


def content_columns(row: dict[str, Any]) -> tuple[str, ...]:
    """The content columns a projected row sets (the others keep their defaults / values)."""
    return tuple(c for c in CONTENT_COLUMNS if c in row)


def content_upsert_sql(cols: tuple[str, ...]) -> str:
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    return (
        f"INSERT INTO content ({', '.join(cols)}) VALUES ({placeholders}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()"
    )


class PostgresUnitOfWork:
    """`async with uow:` opens a connection and a transaction; commit on clean exit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._conn

    async def __aenter__(self) -> "PostgresUnitOfWork":
        self._conn = await self._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self.content = PostgresContentRepository(self._conn)
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            conn, self._conn = self._conn, None
            await self._pool.release(conn)

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        inserted = await self.conn.fetchval(
            "INSERT INTO processed_events(handler, event_id, stream_seq) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            handler,
            event_id,
            stream_seq,
        )
        return inserted is not None

    async def add_outbox(self, event: Envelope) -> None:
        await self.conn.execute(
            "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
            event.event_id,
            event.subject,
            event.to_json(),
        )


class PostgresUnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def __call__(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self.pool)


async def record_delivery_failure(
    pool: asyncpg.Pool,
    *,
    consumer: str,
    stream_seq: int,
    event_id: uuid.UUID | None,
    deliveries: int,
    error: str,
    permanent: bool,
) -> None:
    await pool.execute(
        """INSERT INTO delivery_failures(consumer, stream_seq, event_id, deliveries, error, permanent)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (consumer, stream_seq) DO UPDATE
           SET deliveries = EXCLUDED.deliveries, error = EXCLUDED.error,
               permanent = EXCLUDED.permanent, failed_at = now()""",
        consumer,
        stream_seq,
        event_id,
        deliveries,
        error[:4000],
        permanent,
    )


__all__ = [
    "CONTENT_COLUMNS",
    "PostgresContentRepository",
    "PostgresUnitOfWork",
    "PostgresUnitOfWorkFactory",
    "create_pool",
    "migrate",
    "record_delivery_failure",
]


class PostgresContentIndex:
    """ContentIndex port for ingest: does this content exist, which image is most alike."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def exists(self, content_id: uuid.UUID) -> bool:
        return bool(await self._pool.fetchval("SELECT 1 FROM content WHERE id = $1", content_id))

    async def nearest(self, creator: str, phash: str, exclude: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        # Hamming distance of two 64-bit hex hashes, computed by PostgreSQL (bit_count, PG 14+).
        row = await self._pool.fetchrow(
            """SELECT id, bit_count(('x' || phash)::bit(64) # ('x' || $2)::bit(64)) AS d
               FROM content
               WHERE creator = $1 AND id <> $3 AND length(phash) = 16
               ORDER BY d LIMIT 1""",
            creator,
            phash,
            exclude,
        )
        return (row["id"], int(row["d"])) if row else None
