"""The Fanvue request budget is shared across processes (real PostgreSQL + the test Fanvue over
HTTP): two workers, each with its own client and its own connection pool, together get no more
than one budget; a 429 seen by one pauses the other."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fanvue_server import FanvueTestServer
from tests.waiting import wait_until
from vaultline.adapters.db import create_pool
from vaultline.adapters.db.rate_bucket import PostgresTokenBucket
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.tokens import StaticTokenProvider, TokenSet

pytestmark = pytest.mark.integration

BUDGET = 10
PERIOD = 600.0  # one token back per minute: nothing refills during the test


@pytest.fixture
async def two_workers(migrated_db):
    """Two 'processes': separate pools, separate clients, one bucket key."""
    with FanvueTestServer() as server:
        token = TokenSet.from_token_response(server.issue_tokens(), now=time.time()).access_token
        pools = [await create_pool(migrated_db, min_size=1, max_size=3) for _ in range(2)]
        buckets = [PostgresTokenBucket(p, "fanvue:elena", BUDGET, PERIOD) for p in pools]
        clients = [
            FanvueClient(StaticTokenProvider(token), creator="elena", base_url=server.base_url, rate_limiter=b)
            for b in buckets
        ]
        try:
            yield server, clients, buckets
        finally:
            for c in clients:
                await c.aclose()
            for p in pools:
                await p.close()


async def test_two_workers_together_spend_one_budget(two_workers):
    server, clients, _ = two_workers
    calls = [asyncio.create_task(c.whoami()) for c in clients for _ in range(BUDGET)]
    try:
        await wait_until(lambda: server.count("users.me") >= BUDGET, timeout=20, what="the budget to be spent")
        # Every other call waits for a token that does not come back within the test.
        done, pending = await asyncio.wait(calls, timeout=1.0)
        assert server.count("users.me") == BUDGET
        assert len(done) == BUDGET and len(pending) == BUDGET
    finally:
        for t in calls:
            t.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


async def test_a_429_seen_by_one_worker_pauses_the_other(two_workers):
    server, clients, buckets = two_workers
    server.inject("429", retry_after="3", endpoint="users.me")
    first = asyncio.create_task(clients[0].whoami())  # gets the 429 and pauses the budget
    pool = buckets[0]._pool
    await wait_until(
        lambda: pool.fetchval("SELECT paused_until > clock_timestamp() FROM rate_buckets WHERE key = 'fanvue:elena'"),
        timeout=10, what="the pause to be shared",
    )  # fmt: skip
    asked = time.monotonic()
    assert (await clients[1].whoami())["handle"] == "elena"
    assert time.monotonic() - asked >= 1.5  # the other worker waited out the same pause
    assert (await first)["handle"] == "elena"
    assert server.count("users.me") == 3  # the 429, then one call each


async def test_what_the_server_says_is_left_caps_every_worker(two_workers):
    _, _, buckets = two_workers
    buckets[0].observe_remaining(2)  # X-RateLimit-Remaining: 2, seen by one worker
    await buckets[0].flush()
    takes = [asyncio.create_task(buckets[1].acquire()) for _ in range(4)]
    try:
        done, pending = await asyncio.wait(takes, timeout=1.0)
        assert len(done) == 2 and len(pending) == 2  # the other worker believes no more than 2
    finally:
        for t in takes:
            t.cancel()
        await asyncio.gather(*takes, return_exceptions=True)
