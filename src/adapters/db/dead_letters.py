"""Postgres side of the dead-letter queue."""

from __future__ import annotations

import uuid

import asyncpg

from vaultline.handlers.dlq import OriginalMessage


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
