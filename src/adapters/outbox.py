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
from vaultline.adapters.db import still_open
from vaultline.events import parse_event

log = structlog.get_logger("vaultline.outbox")
CHANNEL = "vaultline_outbox"
RELISTEN_S = 0.5  # how often a relay that lost its listening connection tries to listen again


class OutboxRelay:
    def __init__(
        self, pool: asyncpg.Pool, publisher: JetStreamPublisher, *, batch: int = 100, poll_s: float = 1.0
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._batch = batch
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._deaf = False  # the last attempt to listen failed
        self._failing = False  # the last pass failed

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
        """Relay until `stop` is set; wakes on NOTIFY from the insert trigger, or every poll_s.
        A listening connection that is lost (PostgreSQL restarted) wakes the loop, which listens
        again on a new one, retrying every RELISTEN_S until PostgreSQL answers."""
        listener: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                if listener is None or not still_open(listener):
                    listener = await self._listen(listener)
                # Cleared before the pass: a NOTIFY that arrives during it wakes the next wait.
                self._wake.clear()
                try:
                    n = await self.publish_pending()
                except Exception:
                    if not self._failing:  # once per outage, with the traceback
                        log.exception("outbox relay pass failed; retrying")
                    self._failing = True
                    n = 0
                else:
                    if self._failing:
                        log.info("outbox relay passes work again")
                    self._failing = False
                if n:
                    continue
                listening = listener is not None and still_open(listener)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first(self._wake.wait(), stop.wait()),
                                           timeout=self._poll_s if listening else min(self._poll_s, RELISTEN_S))  # fmt: skip
        finally:
            if listener is not None:
                await self._unlisten(listener)

    async def _listen(self, lost: asyncpg.Connection | None) -> asyncpg.Connection | None:
        """A pooled connection listening on CHANNEL, or None (and a warning) if PostgreSQL cannot
        be reached now. Rows committed meanwhile are found by the pass that follows."""
        if lost is not None:
            await self._unlisten(lost)
            log.warning("outbox relay lost its listening connection; listening again")
        try:
            conn = await self._pool.acquire()
        except Exception as e:
            return self._cannot_listen(e)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_notify)  # lost: wake the loop to listen again
        except Exception as e:
            if still_open(conn):
                conn.terminate()  # half set up, or dying with PostgreSQL: not back into the pool
            await self._pool.release(conn)  # a no-op once terminated
            return self._cannot_listen(e)
        self._deaf = False
        return conn

    def _cannot_listen(self, error: Exception) -> None:
        if not self._deaf:  # once per outage, not every RELISTEN_S
            log.warning("outbox relay cannot listen now; polling", error=repr(error), retry_in_s=RELISTEN_S)
        self._deaf = True

    async def _unlisten(self, conn: asyncpg.Connection) -> None:
        """Give the listening connection back to the pool, not listening (the pool's reset does
        not UNLISTEN: adapters/db create_pool)."""
        if not still_open(conn):
            return  # closed: the pool has taken it back already
        try:
            conn.remove_termination_listener(self._on_notify)
            await conn.remove_listener(CHANNEL, self._on_notify)
        except Exception:
            if still_open(conn):
                conn.terminate()  # maybe still listening: it must not go back into the pool as it is
        finally:
            await self._pool.release(conn)  # a no-op once terminated

    def _on_notify(self, *_: object) -> None:
        self._wake.set()


async def _first(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
