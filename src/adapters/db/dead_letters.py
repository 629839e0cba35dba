"""Postgres side of the dead-letter queue."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from vaultline.handlers.dlq import OriginalMessage


_SUMMARY = (
    "id, consumer, stream, stream_seq, reason, event_id, subject, deliveries, last_error, "
    "recorded_at, redriven_at, redrive_msg_id, dropped_at"
)


def _event_id(headers: dict[str, str]) -> uuid.UUID | None:
    try:
        return uuid.UUID(headers.get("Nats-Msg-Id", ""))
    except ValueError:
        return None


class PostgresDeadLetterStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        *,
        consumer: str,
        stream: str,
        stream_seq: int,
        reason: str,
        original: OriginalMessage | None,
        deliveries: int | None,
    ) -> bool:
        headers = original.headers if original else {}
        inserted = await self._pool.fetchval(
            """INSERT INTO dead_letters(consumer, stream, stream_seq, reason, event_id, subject, payload,
                                        headers, deliveries, last_error)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9,
                       (SELECT error FROM delivery_failures WHERE consumer = $1 AND stream_seq = $3))
               ON CONFLICT (consumer, stream_seq) DO NOTHING
               RETURNING 1""",
            consumer,
            stream,
            stream_seq,
            reason,
            _event_id(headers),
            original.subject if original else None,
            original.data if original else None,
            headers,  # the pool's jsonb codec encodes it
            deliveries,
        )
        return inserted is not None

    # ------------------------------------------------------------------ the operator's side

    async def list(self, *, include_dropped: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT {_SUMMARY} FROM dead_letters WHERE $1 OR dropped_at IS NULL ORDER BY id DESC LIMIT $2",
            include_dropped, limit,
        )  # fmt: skip
        return [dict(r) for r in rows]

    async def get(self, dead_letter_id: int) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT {_SUMMARY}, payload, headers FROM dead_letters WHERE id = $1", dead_letter_id
        )
        return dict(row) if row else None

    async def mark_redriven(self, dead_letter_id: int, msg_id: uuid.UUID) -> None:
        await self._pool.execute(
            "UPDATE dead_letters SET redriven_at = now(), redrive_msg_id = $2 WHERE id = $1", dead_letter_id, msg_id
        )

    async def drop(self, dead_letter_id: int) -> bool:
        """Hide it from the list (kept for the audit trail); False when it was already dropped."""
        status = await self._pool.execute(
            "UPDATE dead_letters SET dropped_at = now() WHERE id = $1 AND dropped_at IS NULL", dead_letter_id
        )
        return status == "UPDATE 1"
