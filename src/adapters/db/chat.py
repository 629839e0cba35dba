"""Fan chat on PostgreSQL: the ChatStore (messages + suggestions, migration 0007), and the
OfferSource / FanProfiles the chat handler and the inbox read through, built on issue 9's
`suggest-ppv` ranking and its fans/sends tables. None of these can send anything."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork
from vaultline.adapters.db.sales import PostgresSendReads, offerable_of, offerable_rows
from vaultline.domain.chat import (
    OPEN_STATUSES,
    ChatLine,
    ConversationSummary,
    FanProfile,
    ModelOffer,
    OfferCandidate,
    OutgoingMessage,
    Suggestion,
)
from vaultline.domain.sends import Offerable, PriceTier
from vaultline.events import Envelope, MessageReceived, MessageSent, ReplyDiscarded, ReplySuggested



def _suggestion(row: asyncpg.Record | dict[str, Any]) -> Suggestion:
    offer = None
    if row["offer_content_id"] is not None:
        offer = ModelOffer(content_id=row["offer_content_id"], price_cents=row["offer_price_cents"] or 0)
    return Suggestion(
        id=row["id"], creator=row["creator"], fan_id=row["fan_id"], message_id=row["message_id"],
        message_event_id=row["message_event_id"], status=row["status"], drafts=tuple(row["drafts"] or ()),
        offer=offer, flags=tuple(row["flags"] or ()), reason=row["reason"], model=row["model"],
        attempts=row["attempts"], created_at=row["created_at"], updated_at=row["updated_at"],
        approved_by=row["approved_by"], sent_draft=row["sent_draft"], edited=row["edited"],
        discarded_by=row["discarded_by"], reply_seconds=row["reply_seconds"],
    )  # fmt: skip


async def _outbox(conn: asyncpg.Connection, event: Envelope) -> None:
    await conn.execute(
        "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
        event.event_id, event.subject, event.to_json(),
    )  # fmt: skip


async def queue_event(pool: asyncpg.Pool, event: Envelope) -> None:
    """An event that starts outside a handler (a CLI stand-in) goes out through the outbox."""
    async with pool.acquire() as conn:
        await _outbox(conn, event)


async def _receive(conn: Any, event: Envelope) -> asyncpg.Record:
    """The message.received row and its pending suggestion; `inserted`: the message is new."""
    p = event.payload
    assert isinstance(p, MessageReceived)
    name = p.fan.display_name or p.fan.handle
    # One statement, no explicit lock: ON CONFLICT ... DO UPDATE waits for a concurrent
    # delivery of the same platform message (webhook + sync + redelivery) to commit and
    # then returns its row, so both see the same message and the same suggestion.
    return await conn.fetchrow(
        """WITH m AS (
               INSERT INTO messages (creator, fan_id, direction, text, platform, platform_message_uuid,
                                     media_uuids, price_cents, sent_at, fan_name, event_id)
               VALUES ($1, $2, 'in', $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (creator, platform, platform_message_uuid) WHERE platform_message_uuid IS NOT NULL
               DO UPDATE SET fan_name = COALESCE(messages.fan_name, EXCLUDED.fan_name)
               RETURNING id, xmax = 0 AS inserted),
           s AS (
               INSERT INTO suggestions (creator, fan_id, message_id, message_event_id)
               SELECT $1, $2, id, $10 FROM m
               ON CONFLICT (message_id) DO UPDATE SET message_id = suggestions.message_id
               RETURNING *)
           SELECT s.*, m.inserted FROM s, m""",
        event.creator, p.fan_id, p.text, p.platform, p.message_uuid, list(p.media_uuids),
        p.price_cents, p.sent_at or event.occurred_at, name, event.event_id,
    )  # fmt: skip


# A person's reply (the inbox's record_sent, and message.sent on a replay): the outgoing
# message, then its suggestion as sent.
_INSERT_OUT = """INSERT INTO messages (creator, fan_id, direction, text, platform, platform_message_uuid, media_uuids,
                                      content_ids, price_cents, sent_at, sent_by, event_id)
                 VALUES ($1, $2, 'out', $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (event_id) DO NOTHING RETURNING id"""
# The event's time, not now(): a replay of reply.discarded sets the same value.
_DISCARD = """UPDATE suggestions SET status = 'discarded', discarded_by = $2, discarded_at = $3, updated_at = now()
              WHERE id = $1 AND status = ANY($4::text[]) RETURNING id"""
_MARK_SENT = """UPDATE suggestions SET status = 'sent', approved_by = $2, approved_at = $3, sent_draft = $4,
                       edited = $5, sent_message_id = COALESCE($6, sent_message_id), reply_seconds = $7,
                       updated_at = now()
                WHERE id = $1"""


async def _supersede(conn: Any, suggestion_id: int) -> None:
    # Older open suggestions of the same conversation are answered by this action.
    await conn.execute(
        """UPDATE suggestions o SET status = 'superseded', updated_at = now()
           FROM suggestions s
           WHERE s.id = $1 AND o.creator = s.creator AND o.fan_id = s.fan_id AND o.id < s.id
             AND o.status = ANY($2::text[])""",
        suggestion_id, list(OPEN_STATUSES),
    )  # fmt: skip


class PostgresChatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------ the chat handler

    async def receive(self, event: Envelope) -> Suggestion:
        return _suggestion(await _receive(self._pool, event))

    async def history(self, creator: str, fan_id: str, *, limit: int, up_to: int | None = None) -> list[ChatLine]:
        rows = await self._pool.fetch(
            """SELECT direction, text, sent_at, price_cents FROM messages
               WHERE creator = $1 AND fan_id = $2 AND ($3::bigint IS NULL OR id <= $3)
               ORDER BY sent_at DESC, id DESC LIMIT $4""",
            creator, fan_id, up_to, limit,
        )  # fmt: skip
        return [ChatLine(r["direction"], r["text"], r["sent_at"], r["price_cents"]) for r in reversed(rows)]

    async def mark_pending(self, suggestion_id: int, reason: str, *, event: Envelope | None = None) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                """UPDATE suggestions SET attempts = attempts + 1, reason = $2, updated_at = now()
                   WHERE id = $1 AND status = 'pending' RETURNING attempts""",
                suggestion_id, reason[:2000],
            )  # fmt: skip
            if event is not None and attempts is not None:
                await _outbox(conn, event)
            return int(attempts or 0)

    async def finish(self, suggestion: Suggestion, *, handler: str, event: Envelope) -> bool:
        s = suggestion
        # One statement = one transaction: processed_events, the suggestion, the outbox event.
        # drafted_at is the event's time, so a replay of reply.suggested sets the same value.
        row = await self._pool.fetchrow(
            """WITH p AS (
                   INSERT INTO processed_events(handler, event_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING 1),
               u AS (
                   UPDATE suggestions SET status = $4, drafts = $5, offer_content_id = $6, offer_price_cents = $7,
                          flags = $8, reason = $9, model = $10, attempts = $11, drafted_at = $15, updated_at = now()
                   WHERE id = $3 AND status = 'pending' AND EXISTS (SELECT 1 FROM p) RETURNING 1),
               o AS (
                   INSERT INTO outbox(event_id, subject, body) SELECT $12, $13, $14 WHERE EXISTS (SELECT 1 FROM u)
                   ON CONFLICT (event_id) DO NOTHING RETURNING 1)
               SELECT (SELECT count(*) FROM u) AS updated, (SELECT count(*) FROM o) AS queued""",
            handler, s.message_event_id, s.id, s.status, list(s.drafts), s.offer.content_id if s.offer else None,
            s.offer.price_cents if s.offer else None, list(s.flags), s.reason, s.model, s.attempts,
            event.event_id, event.subject, event.to_json(), event.occurred_at,
        )  # fmt: skip
        # Not updated: already finished, or a person acted on it; the processed row records it.
        return bool(row["updated"])

    # ------------------------------------------------------------------ the inbox

    async def conversations(self, creator: str | None = None) -> list[ConversationSummary]:
        rows = await self._pool.fetch(
            """WITH last AS (
                   SELECT DISTINCT ON (creator, fan_id) creator, fan_id, text, sent_at
                   FROM messages WHERE ($1::text IS NULL OR creator = $1)
                   ORDER BY creator, fan_id, sent_at DESC, id DESC),
               names AS (
                   SELECT DISTINCT ON (creator, fan_id) creator, fan_id, fan_name
                   FROM messages WHERE fan_name IS NOT NULL AND ($1::text IS NULL OR creator = $1)
                   ORDER BY creator, fan_id, id DESC),
               open AS (
                   SELECT DISTINCT ON (s.creator, s.fan_id) s.creator, s.fan_id, s.status, m.sent_at AS since
                   FROM suggestions s JOIN messages m ON m.id = s.message_id
                   WHERE s.status = ANY($2::text[]) AND ($1::text IS NULL OR s.creator = $1)
                   ORDER BY s.creator, s.fan_id, s.id DESC),
               oldest AS (
                   SELECT s.creator, s.fan_id, min(m.sent_at) AS since
                   FROM suggestions s JOIN messages m ON m.id = s.message_id
                   WHERE s.status = ANY($2::text[]) AND ($1::text IS NULL OR s.creator = $1)
                   GROUP BY s.creator, s.fan_id)
               SELECT last.*, names.fan_name, open.status AS open_status, oldest.since
               FROM last
               LEFT JOIN names USING (creator, fan_id)
               LEFT JOIN open USING (creator, fan_id)
               LEFT JOIN oldest USING (creator, fan_id)""",
            creator, [*OPEN_STATUSES, "sending"],
        )  # fmt: skip
        return [
            ConversationSummary(
                creator=r["creator"], fan_id=r["fan_id"], unanswered=r["open_status"] is not None, spend_cents=0,
                last_message_at=r["sent_at"], last_text=r["text"], suggestion_status=r["open_status"],
                display_name=r["fan_name"], waiting_since=r["since"],
            )  # fmt: skip
            for r in rows
        ]

    async def creators_of(self, fan_id: str) -> list[str]:
        rows = await self._pool.fetch("SELECT DISTINCT creator FROM messages WHERE fan_id = $1 ORDER BY 1", fan_id)
        return [r["creator"] for r in rows]

    async def latest_suggestion(self, creator: str, fan_id: str) -> Suggestion | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM suggestions WHERE creator = $1 AND fan_id = $2 ORDER BY id DESC LIMIT 1", creator, fan_id
        )
        return _suggestion(row) if row else None

    async def waiting_since(self, creator: str, fan_id: str) -> datetime | None:
        return await self._pool.fetchval(
            """SELECT min(m.sent_at) FROM suggestions s JOIN messages m ON m.id = s.message_id
               WHERE s.creator = $1 AND s.fan_id = $2 AND s.status = ANY($3::text[])""",
            creator, fan_id, [*OPEN_STATUSES, "sending"],
        )  # fmt: skip

    async def reply_times(self, creator: str, fan_id: str) -> list[int]:
        rows = await self._pool.fetch(
            """SELECT reply_seconds FROM suggestions
               WHERE creator = $1 AND fan_id = $2 AND status = 'sent' AND reply_seconds IS NOT NULL ORDER BY id""",
            creator, fan_id,
        )  # fmt: skip
        return [r["reply_seconds"] for r in rows]

    async def claim(self, suggestion_id: int) -> str | None:
        async with self._pool.acquire() as conn, conn.transaction():
            prev = await conn.fetchval(
                "SELECT status FROM suggestions WHERE id = $1 FOR UPDATE", suggestion_id
            )
            if prev not in OPEN_STATUSES:
                return None
            await conn.execute("UPDATE suggestions SET status = 'sending', updated_at = now() WHERE id = $1", suggestion_id)
            return prev

    async def release(self, suggestion_id: int, previous_status: str) -> None:
        await self._pool.execute(
            "UPDATE suggestions SET status = $2, updated_at = now() WHERE id = $1 AND status = 'sending'",
            suggestion_id, previous_status,
        )  # fmt: skip

    async def record_sent(
        self, suggestion_id: int, message: OutgoingMessage, *, draft: int | None, edited: bool,
        reply_seconds: int | None, event: Envelope,
    ) -> None:  # fmt: skip
        m = message
        async with self._pool.acquire() as conn, conn.transaction():
            message_id = await conn.fetchval(
                _INSERT_OUT, m.creator, m.fan_id, m.text, m.platform, m.message_uuid, list(m.media_uuids),
                list(m.content_ids), m.price_cents, m.sent_at, m.sent_by, event.event_id,
            )  # fmt: skip
            await conn.execute(_MARK_SENT, suggestion_id, m.sent_by, m.sent_at, draft, edited, message_id, reply_seconds)
            await _supersede(conn, suggestion_id)
            await _outbox(conn, event)

    async def discard(self, suggestion_id: int, *, by: str, event: Envelope) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(_DISCARD, suggestion_id, by, event.occurred_at, list(OPEN_STATUSES))
            if done is None:
                return False
            await _supersede(conn, suggestion_id)
            await _outbox(conn, event)
            return True

    async def sent_content(self, creator: str, fan_id: str) -> set[uuid.UUID]:
        rows = await self._pool.fetch(
            """SELECT DISTINCT unnest(content_ids) AS c FROM messages
               WHERE creator = $1 AND fan_id = $2 AND direction = 'out'""",
            creator, fan_id,
        )  # fmt: skip
        return {r["c"] for r in rows}


class PostgresChatProjection:
    """ChatProjection: the same rows as the chat handler and the inbox write live, from their
    recorded events (`vaultline replay`). Idempotent per event, without processed_events rows
    (the live chat handler's own rows must not be pre-empted: it still drafts pending ones)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def received(self, event: Envelope) -> bool:
        return bool((await _receive(self._pool, event))["inserted"])

    async def suggested(self, event: Envelope) -> bool:
        p = event.payload
        assert isinstance(p, ReplySuggested)
        if p.status == "pending":  # the model was unavailable (as mark_pending wrote it; later retries are not events)
            return bool(await self._pool.fetchval(
                """UPDATE suggestions SET reason = COALESCE(reason, $2), attempts = GREATEST(attempts, $3),
                          updated_at = now()
                   WHERE message_event_id = $1 AND status = 'pending' AND (reason IS NULL OR attempts < $3)
                   RETURNING 1""",
                p.message_event_id, p.reason, p.attempts,
            ))  # fmt: skip
        # As finish() wrote it live: only a suggestion still pending (a person may have answered first).
        return bool(await self._pool.fetchval(
            """UPDATE suggestions SET status = $2, drafts = $3, offer_content_id = $4, offer_price_cents = $5,
                      flags = $6, reason = $7, model = $8, attempts = $9, drafted_at = $10, updated_at = now()
               WHERE message_event_id = $1 AND status = 'pending' RETURNING 1""",
            p.message_event_id, p.status, list(p.drafts), p.offer.content_id if p.offer else None,
            p.offer.price_cents if p.offer else None, list(p.flags), p.reason, p.model, p.attempts, event.occurred_at,
        ))  # fmt: skip

    async def sent(self, event: Envelope) -> bool:
        p = event.payload
        assert isinstance(p, MessageSent)
        async with PostgresUnitOfWork(self._pool) as uow:  # the rebuild's batch pool too
            conn = uow.conn
            message_id = await conn.fetchval(
                _INSERT_OUT, event.creator, p.fan_id, p.text, p.platform, p.message_uuid, list(p.media_uuids),
                [p.offer.content_id] if p.offer else [], p.offer.price_cents if p.offer else None,
                event.occurred_at, p.approved_by, event.event_id,
            )  # fmt: skip
            sid = await self._open(conn, p.suggestion_event_id)
            if sid is not None:
                await conn.execute(_MARK_SENT, sid, p.approved_by, event.occurred_at, p.draft, p.edited, message_id,
                                   p.reply_seconds)  # fmt: skip
                await _supersede(conn, sid)
            return message_id is not None or sid is not None

    async def discarded(self, event: Envelope) -> bool:
        p = event.payload
        assert isinstance(p, ReplyDiscarded)
        async with PostgresUnitOfWork(self._pool) as uow:  # the rebuild's batch pool too
            conn = uow.conn
            sid = await self._open(conn, p.suggestion_event_id)
            if sid is None or await conn.fetchval(_DISCARD, sid, p.discarded_by, event.occurred_at,
                                                  list(OPEN_STATUSES)) is None:  # fmt: skip
                return False
            await _supersede(conn, sid)
            return True

    @staticmethod
    async def _open(conn: Any, message_event_id: uuid.UUID | None) -> int | None:
        """The suggestion a person answered, while it is still open (else already applied)."""
        if message_event_id is None:
            return None
        return await conn.fetchval(
            "SELECT id FROM suggestions WHERE message_event_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            message_event_id, list(OPEN_STATUSES),
        )  # fmt: skip


# --------------------------------------------------------------------------- issue 9: offers and fan profiles

PlatformOf = Callable[[str], Awaitable[str]]  # creator -> platform name ("fanvue" | "local"); cannot send


class SalesOfferSource:
    """OfferSource on issue 9's `suggest-ppv` ranking (handlers.sends.suggest_ppv): uploaded PPV
    content the fan has not received nor a near-copy of, best first, priced by spend tier."""

    def __init__(self, pool: asyncpg.Pool, platform_of: PlatformOf,
                 tiers_of: Callable[[str], Sequence[PriceTier]] | None = None) -> None:  # fmt: skip
        self._pool = pool
        self._platform_of = platform_of
        self._tiers_of = tiers_of

    async def eligible(self, creator: str, fan_id: str, *, limit: int = 5) -> list[OfferCandidate]:
        from vaultline.handlers.sends import suggest_ppv

        kw = {"tiers": self._tiers_of(creator)} if self._tiers_of else {}
        reads = _DetailedReads(self._pool)
        found = await suggest_ppv(reads, creator=creator, platform=await self._platform_of(creator),
                                  fan_id=fan_id, limit=limit, **kw)  # fmt: skip
        out = []
        for f in found:
            r = reads.rows.get(f.content_id)
            if r is not None:
                out.append(OfferCandidate(content_id=f.content_id, price_cents=f.price_cents, category=r["category"],
                                          description=r["description"], tags=tuple(r["tags"] or ()),
                                          media_uuid=r["fanvue_media_uuid"]))  # fmt: skip
        return out


class _DetailedReads(PostgresSendReads):
    """suggest-ppv's reads, keeping the candidate rows it read (description, media uuid) so the
    offer needs no second query."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.rows: dict[uuid.UUID, asyncpg.Record] = {}

    async def offerable(
        self, creator: str, platform: str, *, fan_id: str | None = None, now: datetime | None = None,
        top: int | None = None,
    ) -> list[Offerable]:  # fmt: skip
        if fan_id is None or now is None or top is None:
            raise ValueError("the chat's offers are read for one fan")
        rows = await offerable_rows(self._pool, creator, platform, fan_id=fan_id, now=now, top=top)
        self.rows = {r["id"]: r for r in rows}
        return [offerable_of(r) for r in rows]


class SalesFanProfiles:
    """FanProfiles on issue 9's tables: spend and last purchase from `fans`, what the fan has from
    `sends` (sent, not failed), categories bought from purchased sends."""

    def __init__(self, pool: asyncpg.Pool, platform_of: PlatformOf) -> None:
        self._pool = pool
        self._platform_of = platform_of

    async def profile(self, creator: str, fan_id: str) -> FanProfile:
        platform = await self._platform_of(creator)
        row = await self._pool.fetchrow(
            """SELECT f.lifetime_spend_cents, f.last_purchase_at, COALESCE(f.display_name, f.handle) AS fan_name,
                      (SELECT array_agg(DISTINCT s.content_id) FROM sends s
                       WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $3 AND s.status = 'sent') AS received,
                      (SELECT array_agg(DISTINCT c.category) FROM sends s JOIN content c ON c.id = s.content_id
                       WHERE s.creator = $1 AND s.platform = $2 AND s.fan_id = $3 AND s.purchased_at IS NOT NULL
                         AND c.category IS NOT NULL) AS categories,
                      (SELECT fan_name FROM messages WHERE creator = $1 AND fan_id = $3 AND fan_name IS NOT NULL
                       ORDER BY sent_at DESC, id DESC LIMIT 1) AS chat_name
               FROM (SELECT 1) one
               LEFT JOIN fans f ON f.creator = $1 AND f.platform = $2 AND f.fan_id = $3""",
            creator, platform, fan_id,
        )  # fmt: skip
        return FanProfile(
            fan_id=fan_id, display_name=row["fan_name"] or row["chat_name"], spend_cents=int(row["lifetime_spend_cents"] or 0),
            last_purchase_at=row["last_purchase_at"], categories_bought=tuple(sorted(row["categories"] or ())),
            received=tuple(sorted(row["received"] or ())),
        )  # fmt: skip

    async def spend(self, creator: str, fan_ids: list[str]) -> dict[str, int]:
        rows = await self._pool.fetch(
            """SELECT fan_id, sum(lifetime_spend_cents) AS spend FROM fans
               WHERE creator = $1 AND fan_id = ANY($2::text[]) GROUP BY fan_id""",
            creator, fan_ids,
        )  # fmt: skip
        return {r["fan_id"]: int(r["spend"] or 0) for r in rows}
