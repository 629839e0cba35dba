"""PostgreSQL side of sending (handlers/sends.py): the fan lock, the guard's history, the
reservation and its outcome."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.domain.errors import Conflict
from vaultline.domain.sends import LIVE_STATUSES, PriorSend
from vaultline.events import Envelope
from vaultline.handlers.sends import AttemptRow, ContentForSend, NewSend

HISTORY_SQL = """
SELECT s.id, s.attempt_id, s.content_id, c.phash, s.status, s.reserved_at, s.sent_at, s.message_uuid,
       s.price_cents, s.generation
FROM sends s LEFT JOIN content c ON c.id = s.content_id
WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $3 AND s.status <> 'failed'
"""


def fan_lock_key(creator: str, platform: str, fan_id: str) -> str:
    return f"fan:{creator}:{platform}:{fan_id}"


def prior(row: asyncpg.Record) -> PriorSend:
    return PriorSend(
        send_id=row["id"],
        content_id=row["content_id"],
        phash=row["phash"],
        status=row["status"],
        reserved_at=row["reserved_at"],
        sent_at=row["sent_at"],
        message_uuid=row["message_uuid"],
        price_cents=row["price_cents"],
        generation=row["generation"],
        attempt_id=row["attempt_id"],
    )


async def fan_history(conn: asyncpg.Connection | asyncpg.Pool, creator: str, platform: str, fan_id: str) -> list[PriorSend]:
    return [prior(r) for r in await conn.fetch(HISTORY_SQL, creator, platform, fan_id)]


async def upsert_fan(conn: asyncpg.Connection, creator: str, platform: str, fan_id: str, seen_at: datetime | None) -> None:
    await conn.execute(
        """INSERT INTO fans(creator, platform, fan_id, first_seen_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (creator, platform, fan_id) DO UPDATE
           SET first_seen_at = LEAST(fans.first_seen_at, EXCLUDED.first_seen_at)""",
        creator, platform, fan_id, seen_at,
    )  # fmt: skip


class PostgresFanTx:
    def __init__(self, conn: asyncpg.Connection, creator: str, platform: str, fan_id: str) -> None:
        self.conn, self.creator, self.platform, self.fan_id = conn, creator, platform, fan_id

    async def contents(self, creator: str, ids: Sequence[uuid.UUID]) -> list[ContentForSend]:
        rows = await self.conn.fetch(
            "SELECT id, creator, status, platform, fanvue_media_uuid, phash, price_cents FROM content WHERE id = ANY($1)",
            list(ids),
        )
        return [
            ContentForSend(r["id"], r["creator"], r["status"], r["platform"], r["fanvue_media_uuid"], r["phash"], r["price_cents"])
            for r in rows
        ]

    async def history(self) -> list[PriorSend]:
        return await fan_history(self.conn, self.creator, self.platform, self.fan_id)

    async def reserve(self, rows: Sequence[NewSend]) -> None:
        await upsert_fan(self.conn, self.creator, self.platform, self.fan_id, await self.conn.fetchval("SELECT now()"))
        try:
            async with self.conn.transaction():  # a savepoint: the error message below needs the connection
                await self.conn.executemany(
                    """INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, media_uuid, price_cents,
                                         text, status, generation, forced, reason, sent_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'reserved', $10, $11, $12, $13)""",
                    [
                        (r.send_id, r.attempt_id, r.content_id, self.creator, self.platform, self.fan_id, r.media_uuid,
                         r.price_cents, r.text, r.generation, r.forced, r.reason, r.sent_by)
                        for r in rows
                    ],
                )  # fmt: skip
        except asyncpg.UniqueViolationError:
            live = await self.conn.fetchrow(
                """SELECT content_id, status, reserved_at, sent_at FROM sends
                   WHERE creator = $1 AND platform = $2 AND fan_id = $3 AND content_id = ANY($4) AND status <> 'failed'
                   ORDER BY reserved_at LIMIT 1""",
                self.creator, self.platform, self.fan_id, [r.content_id for r in rows],
            )  # fmt: skip
            what = (
                f"content {live['content_id']} ({live['status']} {(live['sent_at'] or live['reserved_at']):%Y-%m-%d %H:%M UTC})"
                if live
                else "one of these contents"
            )
            raise Conflict(f"refused: fan {self.fan_id} already has {what}") from None


class PostgresSendStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def for_fan(self, creator: str, platform: str, fan_id: str) -> AsyncIterator[PostgresFanTx]:
        uow = PostgresUnitOfWork(self._pool)
        async with uow as tx:
            # Server-wide: two processes sending to one fan take turns through check + reserve.
            await tx.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", fan_lock_key(creator, platform, fan_id))
            yield PostgresFanTx(tx.conn, creator, platform, fan_id)

    async def attempt(self, attempt_id: uuid.UUID) -> list[AttemptRow]:
        rows = await self._pool.fetch("SELECT * FROM sends WHERE attempt_id = $1 ORDER BY reserved_at, id", attempt_id)
        return [
            AttemptRow(
                send_id=r["id"], attempt_id=r["attempt_id"], content_id=r["content_id"], media_uuid=r["media_uuid"],
                fan_id=r["fan_id"], creator=r["creator"], platform=r["platform"], status=r["status"],
                price_cents=r["price_cents"], text=r["text"], forced=r["forced"], reason=r["reason"],
                sent_by=r["sent_by"], reserved_at=r["reserved_at"], message_uuid=r["message_uuid"], sent_at=r["sent_at"],
            )  # fmt: skip
            for r in rows
        ]

    async def mark_sent(self, attempt_id: uuid.UUID, message_uuid: str, sent_at: datetime, events: Sequence[Envelope]) -> None:
        async with PostgresUnitOfWork(self._pool) as tx:
            await tx.conn.execute(
                """UPDATE sends SET status = 'sent', message_uuid = $2, sent_at = $3, error = NULL, updated_at = now()
                   WHERE attempt_id = $1""",
                attempt_id, message_uuid, sent_at,
            )  # fmt: skip
            for e in events:
                await tx.add_outbox(e)

    async def mark(self, attempt_id: uuid.UUID, status: str, error: str) -> None:
        assert status in ("failed", "unknown")
        await self._pool.execute(
            "UPDATE sends SET status = $2, error = $3, updated_at = now() WHERE attempt_id = $1 AND status IN ('reserved', 'unknown')",
            attempt_id, status, error[:2000],
        )  # fmt: skip

    async def message_sends(self, message_uuid: str) -> list[AttemptRow]:
        rows = await self._pool.fetch("SELECT DISTINCT attempt_id FROM sends WHERE message_uuid = $1", message_uuid)
        out: list[AttemptRow] = []
        for r in rows:
            out.extend(a for a in await self.attempt(r["attempt_id"]) if a.message_uuid == message_uuid)
        return out

    async def record(self, event: Envelope) -> None:
        async with PostgresUnitOfWork(self._pool) as tx:
            await tx.add_outbox(event)

    async def message_known(self, message_uuid: str) -> bool:
        return bool(await self._pool.fetchval("SELECT 1 FROM sends WHERE message_uuid = $1 LIMIT 1", message_uuid))


__all__ = ["LIVE_STATUSES", "PostgresSendStore", "fan_history", "upsert_fan"]
