"""A token bucket in PostgreSQL, shared by every process that uses the same key: N upload
workers together stay within Fanvue's 200 requests / 60 s per creator.

Same interface as fanvue.client.TokenBucket (acquire, pause_for, observe_remaining), so the
Fanvue client takes either. Each acquire is one UPDATE under the row lock, on the database's
clock (so processes on different machines agree). `pause_for` and `observe_remaining` are
called synchronously by the client: they apply locally at once and are written to the row in
the background, so the other processes wait too."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger("vaultline.rate_bucket")

_TAKE = """
WITH cur AS (
    SELECT key, clock_timestamp() AS now, paused_until,
           LEAST($2::float8, tokens + GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - updated_at)) * $3::float8) AS t
    FROM rate_buckets WHERE key = $1 FOR UPDATE
)
UPDATE rate_buckets b
SET tokens = CASE WHEN cur.now >= cur.paused_until AND cur.t >= 1 THEN cur.t - 1 ELSE cur.t END,
    updated_at = cur.now
FROM cur WHERE b.key = cur.key
RETURNING (cur.now >= cur.paused_until AND cur.t >= 1) AS granted,
          CASE WHEN cur.now < cur.paused_until THEN EXTRACT(EPOCH FROM cur.paused_until - cur.now)::float8
               ELSE (1 - cur.t) / $3::float8 END AS wait
"""


class PostgresTokenBucket:
    def __init__(
        self, pool: asyncpg.Pool, key: str, capacity: int = 200, period: float = 60.0, *, min_wait: float = 0.01
    ) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("capacity must be >= 1 and period > 0")
        self._pool = pool
        self.key = key
        self.capacity = float(capacity)
        self.rate = capacity / period
        self._min_wait = min_wait
        self._created = False
        self._local_pause = float("-inf")  # monotonic; applies before the row is written
        self._writes: set[asyncio.Task[Any]] = set()

    async def _ensure_row(self) -> None:
        if not self._created:
            await self._pool.execute(
                "INSERT INTO rate_buckets(key, tokens) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                self.key, self.capacity,
            )  # fmt: skip
            self._created = True

    async def acquire(self) -> float:
        """Take one token from the shared bucket, waiting as needed. Returns the seconds waited."""
        await self._ensure_row()
        waited = 0.0
        while True:
            local = self._local_pause - time.monotonic()
            if local > 0:
                await asyncio.sleep(local)
                waited += local
                continue
            row = await self._pool.fetchrow(_TAKE, self.key, self.capacity, self.rate)
            if row is None:  # the row was deleted under us (tests, a manual reset)
                self._created = False
                await self._ensure_row()
                continue
            if row["granted"]:
                return waited
            wait = max(self._min_wait, float(row["wait"]))
            await asyncio.sleep(wait)
            waited += wait

    def pause_for(self, seconds: float) -> None:
        """Nobody, in any process, gets a token for `seconds` (after a 429)."""
        seconds = max(0.0, seconds)
        self._local_pause = max(self._local_pause, time.monotonic() + seconds)
        self._write(
            "UPDATE rate_buckets SET paused_until = GREATEST(paused_until, clock_timestamp() + make_interval(secs => $2)) "
            "WHERE key = $1",
            seconds,
        )

    def observe_remaining(self, remaining: float) -> None:
        """The server says only `remaining` requests are left: no process may believe in more."""
        self._write(
            "UPDATE rate_buckets SET tokens = LEAST($3::float8, tokens + GREATEST(0, EXTRACT(EPOCH FROM "
            "clock_timestamp() - updated_at)) * $4::float8, $2::float8), updated_at = clock_timestamp() WHERE key = $1",
            max(0.0, remaining), self.capacity, self.rate,
        )  # fmt: skip

    def _write(self, sql: str, *args: Any) -> None:
        async def run() -> None:
            try:
                await self._ensure_row()
                await self._pool.execute(sql, self.key, *args)
            except Exception as e:  # the local state still holds; the next 429 tells us again
                log.warning("could not share a rate-limit observation", key=self.key, error=repr(e))

        task = asyncio.get_running_loop().create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for pending background writes (tests, shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
