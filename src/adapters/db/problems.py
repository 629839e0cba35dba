"""Watched files that never became an image: recorded for `vaultline status` and the API."""

from __future__ import annotations

from typing import Any

import asyncpg


async def record_problem(pool: asyncpg.Pool, *, creator: str, path: str, moved_to: str | None, reason: str) -> None:
    await pool.execute(
        "INSERT INTO ingest_problems(creator, path, moved_to, reason) VALUES ($1, $2, $3, $4)",
        creator, path, moved_to, reason,
    )  # fmt: skip


async def recent_problems(pool: asyncpg.Pool, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first: [{id, creator, path, moved_to, reason, recorded_at (ISO 8601)}]."""
    rows = await pool.fetch(
        "SELECT id, creator, path, moved_to, reason, recorded_at FROM ingest_problems "
        "ORDER BY recorded_at DESC, id DESC LIMIT $1",
        limit,
    )
    return [{**dict(r), "recorded_at": r["recorded_at"].isoformat()} for r in rows]
