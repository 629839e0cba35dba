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
from vaultline.domain.sends import PriorSend
from vaultline.events import Envelope
from vaultline.handlers.sends import AttemptRow, ContentForSend, HistoryChanged, NewSend

# The fan's live sends with their contents' phash, and the guard's read with the fan's version:
# SQL functions of migrations/0010_send_guard_read.sql and 0011_send_guard_versions.sql (one
# definition of what a fan has, which suggest-ppv reads too).
HISTORY_SQL = """SELECT id, attempt_id, content_id, phash, status, reserved_at, sent_at, message_uuid, price_cents, generation
FROM send_guard_rows('{}', $1, $2, $3) WHERE kind = 'h'"""
GUARD_READ_SQL = "SELECT * FROM send_guard_snapshot($1, $2, $3, $4)"
# Move the fan's version to the next (no row = version 0: insert 1). Every insert of a live send
# row does this in its own transaction, so a check that read before it cannot reserve against a
# history without that row.
BUMP_VERSION_SQL = """
INSERT INTO send_guard_versions AS g (creator, platform, fan_id, version) VALUES ($1, $2, $3, 1)
ON CONFLICT (creator, platform, fan_id) DO UPDATE SET version = g.version + 1"""
# The reservation as one statement (atomic without BEGIN/COMMIT round trips): move the fan's
# version, only from the one the guard read ($14), and only if that worked the fan, if new, and
# one `reserved` row per content. The unique index refuses a second live send.
RESERVE_SQL = f"""
WITH version AS ({BUMP_VERSION_SQL} WHERE g.version = $14::bigint RETURNING version
), fan AS (
    INSERT INTO fans(creator, platform, fan_id) SELECT $1, $2, $3 FROM version ON CONFLICT DO NOTHING
)
INSERT INTO sends(id, attempt_id, content_id, creator, platform, fan_id, media_uuid, price_cents, text, status,
                  generation, forced, reason, sent_by)
SELECT r.id, r.attempt_id, r.content_id, $1, $2, $3, r.media_uuid, r.price_cents, r.text, 'reserved', r.generation,
       r.forced, r.reason, r.sent_by
FROM version, unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::text[], $8::integer[], $9::text[], $10::integer[],
                     $11::boolean[], $12::text[], $13::text[])
     AS r(id, attempt_id, content_id, media_uuid, price_cents, text, generation, forced, reason, sent_by)"""


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
    """One check of a fan and its reservation. No lock and no transaction of its own: the
    guard's read is one statement (one snapshot) that also reads the fan's version, and the
    reservation inserts only if the version is still the one read."""

    def __init__(self, conn: asyncpg.Connection, creator: str, platform: str, fan_id: str) -> None:
        self.conn, self.creator, self.platform, self.fan_id = conn, creator, platform, fan_id
        self._history: list[PriorSend] | None = None  # read together with the contents
        self._version = 0

    async def _read(self, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """One round trip: the contents asked for, the fan's live sends and the fan's version."""
        rows = await self.conn.fetch(GUARD_READ_SQL, list(ids), self.creator, self.platform, self.fan_id)
        self._version = rows[0]["version"]
        self._history = [prior(tuple(r)[2:12]) for r in rows if r["kind"] == "h"]
        return rows

    async def contents(self, creator: str, ids: Sequence[uuid.UUID]) -> list[ContentForSend]:
        return [
            ContentForSend(r["id"], r["creator"], r["status"], r["platform"], r["fanvue_media_uuid"], r["phash"], r["price_cents"])
            for r in await self._read(ids)
            if r["kind"] == "c"
        ]

    async def history(self) -> list[PriorSend]:
        if self._history is None:
            await self._read([])
        assert self._history is not None
        return self._history

    async def reserve(self, rows: Sequence[NewSend]) -> None:
        # The fan exists from now on; it is "seen" when a message reaches them (mark_sent), the
        # time media.sent carries, so a replay of the events rebuilds the same first_seen_at.
        if self._history is None:
            await self._read([])  # the version to move from
        try:
            status = await self.conn.execute(
                RESERVE_SQL, self.creator, self.platform, self.fan_id,
                [r.send_id for r in rows], [r.attempt_id for r in rows], [r.content_id for r in rows],
                [r.media_uuid for r in rows], [r.price_cents for r in rows], [r.text for r in rows],
                [r.generation for r in rows], [r.forced for r in rows], [r.reason for r in rows],
                [r.sent_by for r in rows], self._version,
            )  # fmt: skip
            if rows and status == "INSERT 0 0":
                self._history = None  # what was read is stale
                raise HistoryChanged(f"fan {self.fan_id}: another send was reserved since the check")
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
        """A check of the fan and its reservation on one pooled connection. Nothing is held
        between the two round trips: two processes sending to one fan both read, the first to
        reserve moves the fan's version, and the other's reservation inserts nothing and raises
        HistoryChanged (the use case checks again and sees the first one's rows). A refused
        check costs one round trip; no lock, no BEGIN, no ROLLBACK."""
        async with self._pool.acquire() as conn:
            yield PostgresFanTx(conn, creator, platform, fan_id)

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
