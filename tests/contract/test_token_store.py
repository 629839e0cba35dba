"""TokenStore contract: the same cases against InMemoryTokenStore and PostgresTokenStore, refreshes
through the test Fanvue server's real token endpoint (rotating, single-use refresh tokens with
reuse detection, so a double refresh would fail loudly), plus key handling."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from tests.fanvue_server import FanvueTestServer
from tests.waiting import wait_until
from vaultline.adapters.fanvue.errors import InvalidGrantError, NotLoggedInError, SecretKeyError, TokenDecryptError
from vaultline.adapters.fanvue.oauth import OAuthClient
from vaultline.adapters.fanvue.tokens import (
    KEY_FILE_NAME,
    InMemoryTokenStore,
    PostgresTokenStore,
    TokenCipher,
    TokenManager,
    TokenSet,
    TokenStore,
    load_cipher,
)

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0002_platform_tokens.sql"

StoreFactory = Callable[[], Awaitable[TokenStore]]


@pytest.fixture(params=["memory", "postgres"])
def store_db(request: pytest.FixtureRequest) -> str | None:
    """None for the in-memory store, else a fresh database URL (resolved here, outside the loop)."""
    return request.getfixturevalue("database_url") if request.param == "postgres" else None


@pytest.fixture
async def new_store(store_db: str | None) -> AsyncIterator[StoreFactory]:
    """Each call returns a store over the same data: for Postgres a separate pool (a separate
    "process"); in memory, the one store (its lock is per process by design)."""
    cipher = TokenCipher.generate()
    if store_db is None:
        store = InMemoryTokenStore(cipher)

        async def same() -> TokenStore:
            return store

        yield same
        return
    database_url = store_db
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(MIGRATION.read_text())
    finally:
        await conn.close()
    opened: list[PostgresTokenStore] = []

    async def fresh() -> TokenStore:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        store = PostgresTokenStore(pool, cipher)
        store._test_pool = pool  # type: ignore[attr-defined]
        opened.append(store)
        return store

    fresh.database_url = database_url  # type: ignore[attr-defined]
    yield fresh
    for s in opened:
        await s._test_pool.close()  # type: ignore[attr-defined]


@pytest.fixture
async def oauth(fanvue_server: FanvueTestServer) -> AsyncIterator[OAuthClient]:
    async with OAuthClient(fanvue_server.client_id, fanvue_server.client_secret,
                           token_url=fanvue_server.token_url) as client:
        yield client


def _grant(server: FanvueTestServer, *, expired: bool = False) -> TokenSet:
    g = server.issue_tokens()
    t = TokenSet.from_token_response(g, now=time.time())
    if expired:
        t = TokenSet(t.access_token, t.refresh_token, time.time() - 10, t.scope)
    return t


async def _saved_grant(new_store: StoreFactory, server: FanvueTestServer, *, expired: bool = False):
    """A new store holding a fresh grant for elena; (store, grant)."""
    store = await new_store()
    grant = _grant(server, expired=expired)
    await store.save("elena", grant)
    return store, grant


async def _two_processes(store, new_store: StoreFactory, oauth: OAuthClient) -> tuple[TokenManager, TokenManager]:
    """Two managers for elena: one on `store`, one on a store of its own (another pool = another
    process on Postgres)."""
    a = TokenManager(store, oauth.refresh_tokens, "elena")
    b = TokenManager(await new_store(), oauth.refresh_tokens, "elena")
    return a, b


async def test_save_load_roundtrip(new_store: StoreFactory) -> None:
    store = await new_store()
    assert await store.load("elena") is None
    t1 = TokenSet("a1", "r1", 1_800_000_000.0, "read:self")
    await store.save("elena", t1)
    assert await store.load("elena") == t1
    t2 = TokenSet("a2", None, None, "")
    await store.save("elena", t2)  # overwrite, not a second row
    assert await store.load("elena") == t2
    assert await (await new_store()).load("elena") == t2
    assert await store.load("other") is None


async def test_only_ciphertext_is_stored(new_store: StoreFactory) -> None:
    store = await new_store()
    tokens = TokenSet("at_SECRET_access_value", "rt_SECRET_refresh_value", 1_800_000_000.0, "read:self")
    await store.save("elena", tokens)
    if isinstance(store, InMemoryTokenStore):
        raw = store.raw("elena")
    else:
        raw = await store._test_pool.fetchval(  # type: ignore[attr-defined]
            "SELECT ciphertext FROM platform_tokens WHERE creator = 'elena' AND platform = 'fanvue'")
        cols = await store._test_pool.fetch(  # type: ignore[attr-defined]
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'platform_tokens'")
        assert {c["column_name"] for c in cols} == {"creator", "platform", "ciphertext", "updated_at"}
    assert raw and b"at_SECRET_access_value" not in bytes(raw) and b"rt_SECRET_refresh_value" not in bytes(raw)
    assert b"SECRET" not in bytes(raw)


async def test_wrong_key_or_moved_ciphertext_is_refused() -> None:
    a, b = TokenCipher.generate(), TokenCipher.generate()
    ct = a.encrypt("elena", "fanvue", TokenSet("x", "y", None))
    with pytest.raises(TokenDecryptError):
        b.decrypt("elena", "fanvue", ct)
    with pytest.raises(TokenDecryptError, match="another account"):
        a.decrypt("mia", "fanvue", ct)  # a row copied onto another creator


async def test_manager_refreshes_expired_token(new_store: StoreFactory, fanvue_server: FanvueTestServer,
                                               oauth: OAuthClient) -> None:
    store, old = await _saved_grant(new_store, fanvue_server, expired=True)
    manager = TokenManager(store, oauth.refresh_tokens, "elena")
    token = await manager.access_token()
    assert token != old.access_token and token in fanvue_server.access_tokens
    assert await manager.access_token() == token  # still valid: no second refresh
    assert fanvue_server.count("oauth.token:refresh_token") == 1
    stored = await store.load("elena")
    assert stored is not None and stored.access_token == token
    assert stored.refresh_token != old.refresh_token and fanvue_server.refresh_token_valid(stored.refresh_token)
    assert stored.expires_at and stored.expires_at > time.time() + 3000


async def test_skew_refreshes_before_expiry(new_store: StoreFactory, fanvue_server: FanvueTestServer,
                                            oauth: OAuthClient) -> None:
    store = await new_store()
    t = _grant(fanvue_server)
    await store.save("elena", TokenSet(t.access_token, t.refresh_token, time.time() + 30, t.scope))
    assert await TokenManager(store, oauth.refresh_tokens, "elena", skew=60).access_token() != t.access_token
    t2 = await store.load("elena")
    assert t2 is not None
    assert await TokenManager(store, oauth.refresh_tokens, "elena", skew=60).access_token() == t2.access_token


async def test_refresh_after_401_uses_already_rotated_token(new_store: StoreFactory,
                                                            fanvue_server: FanvueTestServer,
                                                            oauth: OAuthClient) -> None:
    store, old = await _saved_grant(new_store, fanvue_server)
    a, b = await _two_processes(store, new_store, oauth)
    assert await b.access_token() == old.access_token
    new = await a.refresh_after_401(old.access_token)
    assert new != old.access_token
    # b still holds the old token; its 401 must not spend the (already rotated) refresh token again.
    assert await b.refresh_after_401(old.access_token) == new
    assert fanvue_server.count("oauth.token:refresh_token") == 1


async def test_concurrent_refresh_is_single_flight(new_store: StoreFactory, fanvue_server: FanvueTestServer,
                                                   oauth: OAuthClient) -> None:
    first, old = await _saved_grant(new_store, fanvue_server, expired=True)
    # Two managers (two pools = two processes on Postgres) both find the token expired.
    a, b = await _two_processes(first, new_store, oauth)
    gate = fanvue_server.hold("oauth.token")
    ta = asyncio.create_task(a.access_token())
    tb = asyncio.create_task(b.access_token())
    try:
        await wait_until(lambda: gate.entered >= 1, timeout=10, what="a refresh reached the token endpoint")
        if not isinstance(first, InMemoryTokenStore):
            # The other "process" must be parked on the row lock while the first one refreshes.
            db = new_store.database_url  # type: ignore[attr-defined]

            async def lock_waiters() -> int:
                conn = await asyncpg.connect(db)
                try:
                    return await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'")
                finally:
                    await conn.close()

            await wait_until(lock_waiters, timeout=10, what="second refresher blocked on the row lock")
        assert not ta.done() and not tb.done() and gate.entered == 1
        gate.release()
        ra, rb = await asyncio.wait_for(asyncio.gather(ta, tb), 20)
    finally:
        gate.release()  # never leave a task parked at the gate when an assertion failed
        for t in (ta, tb):
            t.cancel()
    assert ra == rb and ra != old.access_token
    assert fanvue_server.count("oauth.token:refresh_token") == 1
    stored = await first.load("elena")
    assert stored is not None and stored.access_token == ra
    assert fanvue_server.refresh_token_valid(stored.refresh_token)  # the rotated one is persisted
    assert not fanvue_server.refresh_token_valid(old.refresh_token)


async def test_rejected_refresh_token_is_invalid_grant(new_store: StoreFactory, fanvue_server: FanvueTestServer,
                                                       oauth: OAuthClient) -> None:
    store = await new_store()
    old = _grant(fanvue_server, expired=True)
    await oauth.refresh_tokens(old)  # spent elsewhere (e.g. a crashed process that never saved)
    await store.save("elena", old)
    with pytest.raises(InvalidGrantError, match="login"):
        await TokenManager(store, oauth.refresh_tokens, "elena").access_token()
    assert await store.load("elena") == old  # nothing half-written


async def test_not_logged_in(new_store: StoreFactory, oauth: OAuthClient) -> None:
    store = await new_store()
    m = TokenManager(store, oauth.refresh_tokens, "nobody")
    with pytest.raises(NotLoggedInError, match="vaultline fanvue login"):
        await m.access_token()
    with pytest.raises(NotLoggedInError):
        await m.refresh_after_401("x")


# ----------------------------------------------------------------------------- key handling


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    c1 = load_cipher(tmp_path / "data", env=env)
    key_file = tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ct = c1.encrypt("elena", "fanvue", TokenSet("a", "r", None))
    assert load_cipher(tmp_path / "data", env=env).decrypt("elena", "fanvue", ct).access_token == "a"
    assert [p.name for p in (tmp_path / "data").iterdir()] == [KEY_FILE_NAME]  # no temp leftovers


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_cipher(tmp_path, env={})
    os.chmod(tmp_path / KEY_FILE_NAME, mode)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_cipher(tmp_path, env={})


def test_env_key_wins_and_supports_rotation(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    ct = load_cipher(tmp_path, env={"VAULTLINE_SECRET_KEY": old}).encrypt("e", "fanvue", TokenSet("a", None, None))
    rotated = load_cipher(tmp_path, env={"VAULTLINE_SECRET_KEY": f"{new},{old}"})
    assert rotated.decrypt("e", "fanvue", ct).access_token == "a"
    assert not (tmp_path / KEY_FILE_NAME).exists()
    with pytest.raises(SecretKeyError, match="invalid Fernet key"):
        load_cipher(tmp_path, env={"VAULTLINE_SECRET_KEY": "not-a-key"})
