"""PostgreSQL side of sending (handlers/sends.py): the fan lock, the guard's history, the
reservation and its outcome."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.domain.errors import Conflict
from vaultline.domain.sends import PriorSend
from vaultline.events import Envelope
from vaultline.handlers.sends import AttemptRow, ContentForSend, NewSend

HISTORY_COLUMNS = """s.id, s.attempt_id, s.content_id, c.phash, s.status, s.reserved_at, s.sent_at, s.message_uuid,
       s.price_cents, s.generation"""
HISTORY_FROM = """FROM sends s LEFT JOIN content c ON c.id = s.content_id
WHERE s.creator = {0} AND s.platform = {1} AND s.fan_id = {2} AND s.status <> 'failed'"""
HISTORY_SQL = f"SELECT {HISTORY_COLUMNS} {HISTORY_FROM.format('$1', '$2', '$3')}"
# The guard's reads in one round trip, as flat rows (kind 'c': a content asked for, kind 'h': one
# of the fan's live sends); flat rows decode far faster than arrays of records.
GUARD_SQL = f"""
SELECT 'c' AS kind, id, NULL::uuid AS attempt_id, id AS content_id, phash, status, NULL::timestamptz AS reserved_at,
       NULL::timestamptz AS sent_at, NULL::text AS message_uuid, price_cents, NULL::integer AS generation,
       creator, platform, fanvue_media_uuid
FROM content WHERE id = ANY($1)
UNION ALL
SELECT 'h', {HISTORY_COLUMNS}, NULL, NULL, NULL {HISTORY_FROM.format('$2', '$3', '$4')}"""


def fan_lock_key(creator: str, platform: str, fan_id: str) -> int:
    """The fan's advisory lock: a signed 64-bit number of our own, so BEGIN and the lock go to
    the server in one round trip (an int literal needs no parameter)."""
    digest = hashlib.blake2b(f"fan:{creator}:{platform}:{fan_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def prior(row: asyncpg.Record | tuple) -> PriorSend:
    send_id, attempt_id, content_id, phash, status, reserved_at, sent_at, message_uuid, price_cents, generation = row
    return PriorSend(
        send_id=send_id,
        content_id=content_id,
        phash=phash,
        status=status,
        reserved_at=reserved_at,
        sent_at=sent_at,
        message_uuid=message_uuid,
        price_cents=price_cents,
        generation=generation,
        attempt_id=attempt_id,
    )


async def fan_history(conn: asyncpg.Connection | asyncpg.Pool, creator: str, platform: str, fan_id: str) -> list[PriorSend]:
    return [prior(r) for r in await conn.fetch(HISTORY_SQL, creator, platform, fan_id)]


async def upsert_fan(conn: asyncpg.Connection, creator: str, platform: str, fan_id: str, seen_at: datetime | None) -> None:
    await conn.execute(
        """INSERT INTO fans(creator, platform, fan_id, first_seen_at) VALUES ($1, $2, $3, COALESCE($4, now()))
           ON CONFLICT (creator, platform, fan_id) DO UPDATE
           SET first_seen_at = LEAST(fans.first_seen_at, EXCLUDED.first_seen_at)""",
        creator, platform, fan_id, seen_at,
    )  # fmt: skip


class PostgresFanTx:
    def __init__(self, conn: asyncpg.Connection, creator: str, platform: str, fan_id: str) -> None:
        self.conn, self.creator, self.platform, self.fan_id = conn, creator, platform, fan_id
        self._history: list[PriorSend] | None = None  # read together with the contents

    async def contents(self, creator: str, ids: Sequence[uuid.UUID]) -> list[ContentForSend]:
        rows = await self.conn.fetch(GUARD_SQL, list(ids), self.creator, self.platform, self.fan_id)
        self._history = [prior(tuple(r)[1:11]) for r in rows if r["kind"] == "h"]
        return [
            ContentForSend(r["id"], r["creator"], r["status"], r["platform"], r["fanvue_media_uuid"], r["phash"], r["price_cents"])
            for r in rows
            if r["kind"] == "c"
        ]

    async def history(self) -> list[PriorSend]:
        if self._history is not None:
            return self._history
        return await fan_history(self.conn, self.creator, self.platform, self.fan_id)

    async def reserve(self, rows: Sequence[NewSend]) -> None:
        # The fan exists from now on; it is "seen" when a message reaches them (mark_sent), the
        # time media.sent carries, so a replay of the events rebuilds the same first_seen_at.
        await self.conn.execute(
            "INSERT INTO fans(creator, platform, fan_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            self.creator, self.platform, self.fan_id,
        )  # fmt: skip
        await self.conn.execute("SAVEPOINT reserve")  # the error message below needs the transaction
        try:
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
            await self.conn.execute("ROLLBACK TO SAVEPOINT reserve")
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
        """One transaction holding the fan's advisory lock (server-wide: two processes sending to
        one fan take turns through check + reserve). Committed on a clean exit."""
        async with self._pool.acquire() as conn:
            # One round trip: the transaction, the fan's lock, and generic plans for the guard's
            # prepared reads (their index plans do not depend on the values; re-planning each
            # call costs more than the query itself).
            await conn.execute(
                "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; "
                f"SELECT pg_advisory_xact_lock({fan_lock_key(creator, platform, fan_id)})"
            )
            try:
                yield PostgresFanTx(conn, creator, platform, fan_id)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

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
            for creator, platform, fan_id in {(e.creator, e.payload.platform, e.payload.fan_id) for e in events}:
                await upsert_fan(tx.conn, creator, platform, fan_id, sent_at)
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


__all__ = ["PostgresSendStore", "fan_history", "upsert_fan"]
