"""Outbox relay: publishes events that were committed to the `outbox` table.

A change that starts in Postgres (a review decision) writes its row and its event in one
transaction; this relay publishes the event afterwards. A crash between publish and the
`published_at` update republishes the same Nats-Msg-Id, which JetStream drops as a
duplicate inside the duplicate window: each committed event lands in the stream once,
and a rolled-back transaction never reaches it.

A row whose body does not decode can never be published: it moves to `outbox_dead_letters`
with the reason (same transaction) and the relay goes on with the rows behind it."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from vaultline.adapters.bus.broker import JetStreamPublisher, event_headers
from vaultline.events import parse_event

log = structlog.get_logger("vaultline.outbox")
CHANNEL = "vaultline_outbox"


class OutboxRelay:
    def __init__(
        self, pool: asyncpg.Pool, publisher: JetStreamPublisher, *, batch: int = 100, poll_s: float = 1.0
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._batch = batch
        self._poll_s = poll_s
        self._wake = asyncio.Event()

    async def publish_pending(self) -> int:
        """One pass: publish up to `batch` unpublished rows in id order; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED lets several relays (several processes) share the table safely.
            rows = await conn.fetch(
                "SELECT id, event_id, subject, body, created_at FROM outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            done: list[int] = []
            for row in rows:
                try:
                    event = parse_event(bytes(row["body"]))
                except Exception as e:  # can never be published: move it aside, keep going
                    await self._dead_letter(conn, row, f"undecodable event: {type(e).__name__}: {e}")
                    continue
                try:
                    await self._publisher.publish_raw(
                        row["subject"], bytes(row["body"]), event_headers(event), correlation_id=str(event.correlation_id)
                    )
                except Exception as e:
                    await conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1", row["id"], repr(e)
                    )
                    log.warning("outbox publish failed; will retry", event_id=str(event.event_id), error=repr(e))
                    break  # keep order: later rows wait for this one
                done.append(row["id"])
            await self._mark_published(conn, done)
            return len(done)

    async def _dead_letter(self, conn: asyncpg.Connection, row: asyncpg.Record, reason: str) -> None:
        await conn.execute(
            "INSERT INTO outbox_dead_letters(outbox_id, event_id, subject, body, created_at, reason) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (outbox_id) DO NOTHING",
            row["id"], row["event_id"], row["subject"], row["body"], row["created_at"], reason[:2000],
        )  # fmt: skip
        await conn.execute("DELETE FROM outbox WHERE id = $1", row["id"])
        log.error("outbox row moved to outbox_dead_letters", outbox_id=row["id"], reason=reason)

    async def _mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        if ids:
            await conn.execute(
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])", ids
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; wakes on NOTIFY from the insert trigger, or every poll_s."""
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(CHANNEL, self._on_notify)
            while not stop.is_set():
                try:
                    n = await self.publish_pending()
                except Exception:
                    log.exception("outbox relay pass failed")
                    n = 0
                if n:
                    continue
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first(self._wake.wait(), stop.wait()), timeout=self._poll_s)
        finally:
            try:
                await listener.remove_listener(CHANNEL, self._on_notify)
            except Exception:
                listener.terminate()  # still listening: it must not go back into the pool as it is
            finally:
                await self._pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()


async def _first(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
