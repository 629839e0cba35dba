"""Postgres side of the Fanvue ingress (migrations/0006_fanvue_accounts.sql): which creator a
Fanvue user is, webhooks kept for inspection, the sync loop's high-water marks and open PPV
messages, and recording facts as outbox rows (published by the relay) in one transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from vaultline.domain.errors import Conflict, Invalid
from vaultline.domain.fanvue_sync import OpenPpv
from vaultline.events import Envelope


async def save_account(db: "str | asyncpg.Pool | asyncpg.Connection", creator: str, me: Mapping[str, Any]) -> None:
    """Remember the Fanvue user behind `creator`'s tokens (GET /users/me). One Fanvue account
    belongs to one creator: connecting it to a second one is a Conflict."""
    user_uuid = str(me.get("uuid") or "").strip()
    if not user_uuid:
        raise Invalid(f"GET /users/me returned no uuid: {dict(me)!r}")
    conn = await asyncpg.connect(db) if isinstance(db, str) else db
    try:
        owner = await conn.fetchval(
            "SELECT creator FROM fanvue_accounts WHERE user_uuid = $1 AND creator <> $2", user_uuid, creator)
        if owner is not None:
            raise Conflict(f"Fanvue account @{me.get('handle')} ({user_uuid}) is already connected to "
                           f"creator {owner!r}; log that creator in with its own account")
        await conn.execute(
            """INSERT INTO fanvue_accounts (creator, user_uuid, handle, display_name)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (creator) DO UPDATE SET user_uuid = EXCLUDED.user_uuid, handle = EXCLUDED.handle,
                   display_name = EXCLUDED.display_name, updated_at = now()""",
            creator, user_uuid, me.get("handle"), me.get("displayName"),
        )
    finally:
        if isinstance(db, str):
            await conn.close()


class PostgresFanvueStore:
    """Implements handlers.webhooks.WebhookStore and handlers.fanvue_sync.SyncStore."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------ accounts

    async def creator_for(self, user_uuid: str) -> str | None:
        return await self._pool.fetchval("SELECT creator FROM fanvue_accounts WHERE user_uuid = $1", user_uuid)

    async def account_uuid(self, creator: str) -> str | None:
        return await self._pool.fetchval("SELECT user_uuid FROM fanvue_accounts WHERE creator = $1", creator)

    # ------------------------------------------------------------------ facts

    async def record(self, events: Sequence[Envelope], *, creator: str | None = None,
                     state: Mapping[str, str] | None = None, open_ppv: Sequence[OpenPpv] = (),
                     closed_ppv: Sequence[str] = ()) -> int:
        """In one transaction: each event into the outbox (an event id already there is a
        redelivery and changes nothing), plus the sync loop's new marks for `creator`. Returns
        how many events were new."""
        async with self._pool.acquire() as conn, conn.transaction():
            new = 0
            for e in events:
                inserted = await conn.fetchval(
                    "INSERT INTO outbox(event_id, subject, body) VALUES ($1, $2, $3) "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING 1",
                    e.event_id, e.subject, e.to_json(),
                )
                new += inserted is not None
            if creator is not None:
                for name, value in (state or {}).items():
                    await conn.execute(
                        """INSERT INTO fanvue_sync_state (creator, name, value) VALUES ($1, $2, $3)
                           ON CONFLICT (creator, name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
                        creator, name, value,
                    )
                for p in open_ppv:
                    await conn.execute(
                        """INSERT INTO fanvue_open_ppv (creator, message_uuid, fan_uuid, price_cents, sent_at)
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (creator, message_uuid) DO NOTHING""",
                        creator, p.message_uuid, p.fan_uuid, p.price_cents, p.sent_at,
                    )
                if closed_ppv:
                    await conn.execute(
                        "DELETE FROM fanvue_open_ppv WHERE creator = $1 AND message_uuid = ANY($2::text[])",
                        creator, list(closed_ppv),
                    )
            return new

    async def keep_unrouted(self, event: str, recipient_uuid: str | None, reason: str, body: bytes) -> None:
        """A verified webhook that published nothing, kept for a person to look at."""
        await self._pool.execute(
            """INSERT INTO fanvue_unrouted_webhooks (event, recipient_uuid, reason, body, body_sha256)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (body_sha256) DO UPDATE SET deliveries = fanvue_unrouted_webhooks.deliveries + 1,
                   last_seen_at = now(), reason = EXCLUDED.reason""",
            event, recipient_uuid, reason[:2000], body, hashlib.sha256(f"{event}\n".encode() + body).hexdigest(),
        )

    async def unrouted(self, limit: int = 50) -> list[dict[str, Any]]:
        """The kept webhooks, newest first, with their bodies decoded for reading."""
        rows = await self._pool.fetch(
            """SELECT id, event, recipient_uuid, reason, body, deliveries, received_at, last_seen_at
               FROM fanvue_unrouted_webhooks ORDER BY last_seen_at DESC, id DESC LIMIT $1""", limit)
        return [{**{k: r[k] for k in ("id", "event", "recipient_uuid", "reason", "deliveries")},
                 "received_at": r["received_at"].isoformat(), "last_seen_at": r["last_seen_at"].isoformat(),
                 "body": bytes(r["body"]).decode("utf-8", "replace")} for r in rows]

    # ------------------------------------------------------------------ sync state

    async def fanvue_creators(self) -> list[str]:
        """Creators with Fanvue tokens stored (after `vaultline fanvue login`)."""
        rows = await self._pool.fetch("SELECT creator FROM platform_tokens WHERE platform = 'fanvue' ORDER BY creator")
        return [r["creator"] for r in rows]

    async def sync_state(self, creator: str) -> dict[str, str]:
        rows = await self._pool.fetch("SELECT name, value FROM fanvue_sync_state WHERE creator = $1", creator)
        return {r["name"]: r["value"] for r in rows}

    async def open_ppv(self, creator: str, *, since: datetime, limit: int = 100) -> list[OpenPpv]:
        rows = await self._pool.fetch(
            """SELECT message_uuid, fan_uuid, price_cents, sent_at FROM fanvue_open_ppv
               WHERE creator = $1 AND sent_at >= $2 ORDER BY sent_at DESC LIMIT $3""",
            creator, since, limit,
        )
        return [OpenPpv(r["message_uuid"], r["fan_uuid"], r["price_cents"], r["sent_at"]) for r in rows]
