"""The platform of a creator never changes silently (real PostgreSQL): only "no tokens" means
local, a database error is transient, and a login is seen without a restart."""

from __future__ import annotations

import time

import asyncpg
import pytest

from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenSet, load_cipher
from vaultline.adapters.platforms import FanvuePlatform, LocalPlatform, PlatformResolver
from vaultline.domain.retry import TransientError

pytestmark = pytest.mark.integration

GRANT = {"access_token": "a", "refresh_token": "r", "expires_in": 3600, "token_type": "Bearer", "scope": "openid"}


async def test_a_login_is_seen_by_the_next_upload(pool, tmp_path):
    resolver = PlatformResolver(pool, tmp_path)
    try:
        assert isinstance(await resolver("elena"), LocalPlatform)
        store = PostgresTokenStore(pool, load_cipher(tmp_path))
        await store.save("elena", TokenSet.from_token_response(GRANT, now=time.time()))  # `vaultline fanvue login`
        platform = await resolver("elena")
        assert isinstance(platform, FanvuePlatform)
        assert await resolver("elena") is platform  # one client per creator
        assert isinstance(await resolver("maya"), LocalPlatform)
    finally:
        await resolver.close()


async def test_a_database_error_is_transient_not_local(pool, tmp_path):
    resolver = PlatformResolver(pool, tmp_path)
    store = PostgresTokenStore(pool, load_cipher(tmp_path))
    await store.save("elena", TokenSet.from_token_response(GRANT, now=time.time()))
    # The database goes away under a running worker (here: the table is not reachable).
    await pool.execute("ALTER TABLE platform_tokens RENAME TO platform_tokens_away")
    try:
        with pytest.raises(TransientError):
            await resolver("elena")
    finally:
        await pool.execute("ALTER TABLE platform_tokens_away RENAME TO platform_tokens")
    try:
        assert isinstance(await resolver("elena"), FanvuePlatform)  # the error was not remembered
    finally:
        await resolver.close()


async def test_an_unreachable_database_is_transient(tmp_path):
    # Nothing listens on port 9 of loopback: every query fails to connect.
    dead = await asyncpg.create_pool("postgresql://x@127.0.0.1:9/none", min_size=0)
    try:
        with pytest.raises(TransientError):
            await PlatformResolver(dead, tmp_path)("elena")
    finally:
        await dead.close()
