"""Apply migrations/*.sql in order, each exactly once.

Two processes may run this at the same time (two workers starting together): a session-level
advisory lock serialises them, and the second one finds nothing left to do."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

# Any constant works; it only has to be the same for every vaultline process.
_LOCK_KEY = 0x7661756C74  # "vault"


def migrations_dir() -> Path:
    override = os.environ.get("VAULTLINE_MIGRATIONS_DIR")
    if override:
        return Path(override)
    # src/adapters/db/migrate.py -> repository root / migrations
    return Path(__file__).resolve().parents[3] / "migrations"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations directory not found: {directory}")
    return [Migration(p.stem, p) for p in sorted(directory.glob("*.sql"))]


class MigrationError(RuntimeError):
    pass


async def migrate(database_url: str, directory: Path | None = None, *, schema: str | None = None) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call. `schema`: apply them
    inside that (existing) schema instead of the default one (replay --rebuild)."""
    pending = discover(directory)
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema} if schema else None)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    text PRIMARY KEY,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
            applied: list[str] = []
            for m in pending:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        # An applied file was edited: the database no longer matches the code.
                        raise MigrationError(
                            f"migration {m.version} changed after it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations(version, checksum) VALUES ($1, $2)", m.version, m.checksum
                    )
                applied.append(m.version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
