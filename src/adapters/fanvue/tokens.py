"""OAuth tokens for platform accounts: encrypted at rest, refreshed single-flight.

Fanvue refresh tokens rotate and are single use: two refreshes racing with the same refresh token
leave one of them with `invalid_grant` and, worse, may lose the rotated token. So every refresh for
a creator is serialised: an asyncio.Lock per creator inside a process and, on Postgres, a row lock
(SELECT ... FOR UPDATE) held across the refresh call, with the row re-read under the lock so a
second process picks up the token the first one already rotated. The new token set is written in
the same transaction, so either both the rotation and its persistence happen or neither is visible.

Only Fernet ciphertext is stored. The key comes from VAULTLINE_SECRET_KEY (one or more comma-
separated Fernet keys; the first encrypts, all decrypt, which allows rotation) or from a 0600 key
file in the data dir, created on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from vaultline.adapters.fanvue.errors import (
    InvalidGrantError,
    NotLoggedInError,
    SecretKeyError,
    TokenDecryptError,
)

if TYPE_CHECKING:
    import asyncpg

PLATFORM = "fanvue"
KEY_ENV = "VAULTLINE_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
DEFAULT_SKEW = 60.0  # refresh this many seconds before expiry: a token must outlive the request


@dataclass(frozen=True)
class TokenSet:
    """One OAuth grant. `expires_at` is Unix seconds (None = unknown: used until a 401)."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    scope: str = ""

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and self.expires_at - seconds <= now

    @classmethod
    def from_token_response(cls, body: Mapping[str, Any], *, now: float,
                            previous: "TokenSet | None" = None) -> "TokenSet":
        """Build from a token endpoint response. A response without refresh_token (no rotation)
        keeps the previous one; without scope keeps the previous scope."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response has no access_token")
        refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
        expires_in = body.get("expires_in")
        try:
            expires_at = now + float(expires_in) if expires_in is not None else None
        except (TypeError, ValueError):
            expires_at = None
        scope = body.get("scope")
        if scope is None:
            scope = previous.scope if previous else ""
        elif isinstance(scope, list):
            scope = " ".join(str(s) for s in scope)
        return cls(access, refresh, expires_at, str(scope))

    def __repr__(self) -> str:  # never print secrets into logs
        exp = f"{self.expires_at:.0f}" if self.expires_at is not None else "None"
        return f"TokenSet(access_token=***, refresh_token=***, expires_at={exp}, scope={self.scope!r})"


# ----------------------------------------------------------------------------- encryption


class TokenCipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) around a TokenSet. The creator and platform are sealed
    inside the plaintext and checked on decrypt, so a ciphertext copied onto another creator's row
    is refused instead of silently used."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no encryption key")
        try:
            self._f = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                f"invalid Fernet key ({exc}); generate one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
            ) from None

    @classmethod
    def generate(cls) -> "TokenCipher":
        return cls([Fernet.generate_key()])

    def encrypt(self, creator: str, platform: str, tokens: TokenSet) -> bytes:
        doc = {"v": 1, "creator": creator, "platform": platform, "tokens": asdict(tokens)}
        return self._f.encrypt(json.dumps(doc, separators=(",", ":")).encode())

    def decrypt(self, creator: str, platform: str, ciphertext: bytes) -> TokenSet:
        try:
            doc = json.loads(self._f.decrypt(bytes(ciphertext)))
        except InvalidToken:
            raise TokenDecryptError(
                f"cannot decrypt the {platform} tokens of {creator!r}: wrong {KEY_ENV} / key file, "
                "or tampered data; log in again"
            ) from None
        if doc.get("creator") != creator or doc.get("platform") != platform:
            raise TokenDecryptError(f"stored {platform} tokens for {creator!r} belong to another account")
        return TokenSet(**doc["tokens"])


def load_cipher(data_dir: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> TokenCipher:
    """The key from VAULTLINE_SECRET_KEY, else from DATA_DIR/secret.key (created 0600 on first use).
    Refuses a key file that group or others can access."""
    env = os.environ if env is None else env
    raw = (env.get(KEY_ENV) or "").strip()
    if raw:
        return TokenCipher([k.strip().encode() for k in raw.split(",") if k.strip()])
    if data_dir is None:
        raise SecretKeyError(f"no {KEY_ENV} and no data dir for a key file")
    return TokenCipher([read_or_create_key_file(Path(data_dir) / KEY_FILE_NAME)])


def read_or_create_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        _create_key_file(path)
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise SecretKeyError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SecretKeyError(
            f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}: it must not be readable by "
            f"group or others (it decrypts the platform tokens). Fix with `chmod 600 {path}`."
        )
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise SecretKeyError(f"key file {path} is owned by uid {st.st_uid}, not by this user")
    key = path.read_bytes().strip()
    if not key:
        raise SecretKeyError(f"key file {path} is empty")
    return key


def _create_key_file(path: Path) -> None:
    # Write a temp file then hard-link it into place: the link fails if another process won the
    # race, and nobody ever reads a half-written key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- stores

Refresher = Callable[[TokenSet], Awaitable[TokenSet]]
"""Exchanges the refresh token of the given set for a new TokenSet (see oauth.OAuthClient.refresher)."""


class TokenStore(Protocol):
    async def load(self, creator: str) -> TokenSet | None: ...

    async def save(self, creator: str, tokens: TokenSet) -> None: ...

    async def refresh(self, creator: str, *, needs_refresh: Callable[[TokenSet], bool],
                      refresher: Refresher) -> TokenSet:
        """Single-flight refresh: under a per-creator lock (and a row lock where the store is
        shared between processes), re-read the current tokens; if `needs_refresh(current)` call
        `refresher(current)` and persist the result atomically; return the tokens now current.
        Raises NotLoggedInError when nothing is stored."""
        ...


class _CreatorLocks:
    """asyncio.Lock per creator (created lazily on the running loop)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, creator: str) -> asyncio.Lock:
        lock = self._locks.get(creator)
        if lock is None:
            lock = self._locks[creator] = asyncio.Lock()
        return lock


class InMemoryTokenStore:
    """For tests and single-process use. Keeps ciphertext too, so it behaves like the real one."""

    def __init__(self, cipher: TokenCipher | None = None, platform: str = PLATFORM) -> None:
        self._cipher = cipher or TokenCipher.generate()
        self._platform = platform
        self._rows: dict[str, bytes] = {}
        self._locks = _CreatorLocks()

    async def load(self, creator: str) -> TokenSet | None:
        raw = self._rows.get(creator)
        return None if raw is None else self._cipher.decrypt(creator, self._platform, raw)

    async def save(self, creator: str, tokens: TokenSet) -> None:
        self._rows[creator] = self._cipher.encrypt(creator, self._platform, tokens)

    async def refresh(self, creator: str, *, needs_refresh: Callable[[TokenSet], bool],
                      refresher: Refresher) -> TokenSet:
        async with self._locks(creator):
            current = await self.load(creator)
            if current is None:
                raise NotLoggedInError(f"no {self._platform} tokens for {creator!r}")
            if not needs_refresh(current):
                return current
            new = await refresher(current)
            await self.save(creator, new)
            return new

    def raw(self, creator: str) -> bytes | None:
        """The stored ciphertext (tests assert it holds no plaintext)."""
        return self._rows.get(creator)


class PostgresTokenStore:
    """Table platform_tokens (migrations/0002_platform_tokens.sql). Pass an asyncpg pool, or a
    DSN (then the store owns a small pool; close it with `await store.close()` or `async with`)."""

    def __init__(self, pool_or_dsn: "asyncpg.Pool | str", cipher: TokenCipher, *,
                 platform: str = PLATFORM, lock_timeout_s: float = 120.0) -> None:
        self._pool: asyncpg.Pool | None = None if isinstance(pool_or_dsn, str) else pool_or_dsn
        self._dsn = pool_or_dsn if isinstance(pool_or_dsn, str) else None
        self._owns_pool = self._pool is None
        self._pool_lock = asyncio.Lock()
        self._cipher = cipher
        self._platform = platform
        self._locks = _CreatorLocks()
        # Bounds how long a process waits for another one's refresh (which includes an HTTP call).
        self._lock_timeout_ms = int(lock_timeout_s * 1000)

    async def _get_pool(self) -> "asyncpg.Pool":
        if self._pool is None:
            import asyncpg

            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        return self._pool

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> "PostgresTokenStore":
        await self._get_pool()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def load(self, creator: str) -> TokenSet | None:
        pool = await self._get_pool()
        raw = await pool.fetchval(
            "SELECT ciphertext FROM platform_tokens WHERE creator = $1 AND platform = $2",
            creator, self._platform,
        )
        return None if raw is None else self._cipher.decrypt(creator, self._platform, raw)

    async def save(self, creator: str, tokens: TokenSet) -> None:
        pool = await self._get_pool()
        await pool.execute(
            """INSERT INTO platform_tokens (creator, platform, ciphertext, updated_at)
               VALUES ($1, $2, $3, now())
               ON CONFLICT (creator, platform)
               DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = now()""",
            creator, self._platform, self._cipher.encrypt(creator, self._platform, tokens),
        )

    async def refresh(self, creator: str, *, needs_refresh: Callable[[TokenSet], bool],
                      refresher: Refresher) -> TokenSet:
        pool = await self._get_pool()
        # The asyncio lock keeps coroutines of this process from queueing on the row lock with
        # one pooled connection each; the row lock serialises against other processes.
        async with self._locks(creator), pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
            raw = await conn.fetchval(
                "SELECT ciphertext FROM platform_tokens WHERE creator = $1 AND platform = $2 FOR UPDATE",
                creator, self._platform,
            )
            if raw is None:
                raise NotLoggedInError(f"no {self._platform} tokens for {creator!r}")
            current = self._cipher.decrypt(creator, self._platform, raw)
            if not needs_refresh(current):
                return current  # another process rotated it while we waited for the lock
            new = await refresher(current)
            await conn.execute(
                "UPDATE platform_tokens SET ciphertext = $3, updated_at = now() "
                "WHERE creator = $1 AND platform = $2",
                creator, self._platform, self._cipher.encrypt(creator, self._platform, new),
            )
            return new


# ----------------------------------------------------------------------------- manager


class TokenProvider(Protocol):
    """What FanvueClient needs: a current access token, and a refresh after a 401."""

    async def access_token(self) -> str: ...

    async def refresh_after_401(self, rejected_token: str) -> str: ...


class StaticTokenProvider:
    """A fixed access token (scripts, tests). A 401 cannot be repaired."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def access_token(self) -> str:
        return self._token

    async def refresh_after_401(self, rejected_token: str) -> str:
        raise InvalidGrantError("static access token was rejected and cannot be refreshed")


class TokenManager:
    """Valid access tokens for one creator. Refreshes `skew` seconds before expiry and after a 401,
    single-flight through the store. `clock` returns Unix seconds (injectable for tests)."""

    def __init__(self, store: TokenStore, refresher: Refresher, creator: str, *,
                 skew: float = DEFAULT_SKEW, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._refresher = refresher
        self.creator = creator
        self._skew = skew
        self._clock = clock
        self._cached: TokenSet | None = None

    async def tokens(self) -> TokenSet:
        """The current, unexpired token set (refreshing first if needed)."""
        cur = self._cached or await self._store.load(self.creator)
        if cur is None:
            raise NotLoggedInError(
                f"no Fanvue tokens for creator {self.creator!r}: run `vaultline fanvue login --creator {self.creator}`"
            )
        if cur.expires_within(self._skew, self._clock()):
            cur = await self._store.refresh(
                self.creator,
                # Re-checked under the lock: another worker may have refreshed meanwhile.
                needs_refresh=lambda t: t.expires_within(self._skew, self._clock()),
                refresher=self._refresher,
            )
        self._cached = cur
        return cur

    async def access_token(self) -> str:
        return (await self.tokens()).access_token

    async def refresh_after_401(self, rejected_token: str) -> str:
        """Fanvue rejected `rejected_token`. Refresh unless the stored token already differs (another
        coroutine or process rotated it), then return the token to retry with."""
        self._cached = None
        cur = await self._store.refresh(
            self.creator,
            needs_refresh=lambda t: t.access_token == rejected_token
            or t.expires_within(self._skew, self._clock()),
            refresher=self._refresher,
        )
        self._cached = cur
        return cur.access_token

    async def save(self, tokens: TokenSet) -> None:
        await self._store.save(self.creator, tokens)
        self._cached = tokens

    def forget(self) -> None:
        """Drop the in-memory copy (next call re-reads the store)."""
        self._cached = None
