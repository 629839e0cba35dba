"""Postgres side of the upload state machine."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from vaultline.adapters.db import PostgresUnitOfWork, still_open
from vaultline.domain.content import project
from vaultline.events import Envelope
from vaultline.handlers.upload import LostRace, UploadState

# Seed of hashtextextended() for the per-content advisory locks, so they cannot collide
# with other advisory locks (migrations) by accident.
_LOCK_SEED = 0x75706C6F6164  # "upload"

_FIELDS = ("step", "media_uuid", "upload_id", "parts", "post", "post_uuid", "error", "failed_step")


def _state(row: asyncpg.Record) -> UploadState:
    return UploadState(
        content_id=row["content_id"],
        creator=row["creator"],
        platform=row["platform"],
        vault=row["vault"],
        vault_folder=row["vault_folder"],
        approval_event_id=row["approval_event_id"],
        step=row["step"],
        media_uuid=row["media_uuid"],
        upload_id=row["upload_id"],
        parts=row["parts"] or [],
        post=row["post"],
        post_uuid=row["post_uuid"],
        error=row["error"],
        failed_step=row["failed_step"],
    )


class PostgresUploadStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, state: UploadState) -> UploadState:
        await self._pool.execute(
            """INSERT INTO uploads(content_id, creator, platform, vault, vault_folder, approval_event_id, post)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (content_id) DO NOTHING""",
            state.content_id, state.creator, state.platform or "unknown", state.vault or "feed",
            state.vault_folder or "", state.approval_event_id, state.post,
        )  # fmt: skip
        row = await self._pool.fetchrow("SELECT * FROM uploads WHERE content_id = $1", state.content_id)
        return _state(row)

    async def save(self, state: UploadState, expected_step: str, conn: Any = None) -> None:
        """Compare-and-set: only from `expected_step`; LostRace when another run moved it."""
        sets = ", ".join(f"{f} = ${i}" for i, f in enumerate(_FIELDS, start=3))
        status = await (conn or self._pool).execute(
            f"UPDATE uploads SET {sets}, attempts = attempts + 1, updated_at = now() "
            "WHERE content_id = $1 AND step = $2",
            state.content_id,
            expected_step,
            *(getattr(state, f) for f in _FIELDS),
        )
        if status != "UPDATE 1":
            raise LostRace(f"upload of {state.content_id} is no longer at step {expected_step!r}")

    @contextlib.asynccontextmanager
    async def exclusive(self, content_id: uuid.UUID) -> AsyncIterator[bool]:
        """A session advisory lock on a connection of its own for the whole run: a crashed
        process's connection closes and the lock goes with it."""
        conn = await self._pool.acquire()
        got: bool | None = None  # None: the lock request did not complete, the session may hold it
        try:
            got = bool(
                await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, $2))", str(content_id), _LOCK_SEED)
            )
            yield got
        finally:
            # The pool's reset does not unlock (adapters/db create_pool): a session that may
            # still hold the lock is unlocked here or terminated, never pooled as it is.
            try:
                if got is None:
                    if still_open(conn):
                        conn.terminate()
                elif got:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, $2))", str(content_id), _LOCK_SEED)
                    except BaseException as e:
                        if still_open(conn):
                            conn.terminate()  # the lock ends with the session
                        if not isinstance(e, Exception):
                            raise  # cancelled mid-unlock: the cancellation goes on; else the run's outcome stands
            finally:
                await self._pool.release(conn)

    async def _conclude(self, state: UploadState, event: Envelope, step: str, expected_step: str) -> None:
        state_copy = UploadState(**{**state.__dict__, "step": step})
        uow = PostgresUnitOfWork(self._pool)
        async with uow as tx:
            await self.save(state_copy, expected_step, tx.conn)
            row = await tx.content.get(state.content_id, for_update=True)
            new = project(row, event)
            if new is not None:
                await tx.content.upsert(new)
            await tx.add_outbox(event)

    async def finish(self, state: UploadState, uploaded: Envelope, expected_step: str) -> None:
        await self._conclude(state, uploaded, "done", expected_step)

    async def fail(self, state: UploadState, failed: Envelope, expected_step: str) -> None:
        await self._conclude(state, failed, "failed", expected_step)

    async def review_key(self, content_id: uuid.UUID) -> tuple[str, str] | None:
        row = await self._pool.fetchrow(
            "SELECT review_key, original_filename FROM content WHERE id = $1 AND review_key IS NOT NULL", content_id
        )
        return (row["review_key"], row["original_filename"] or "") if row else None

    async def get(self, content_id: uuid.UUID) -> UploadState | None:
        row = await self._pool.fetchrow("SELECT * FROM uploads WHERE content_id = $1", content_id)
        return _state(row) if row else None
