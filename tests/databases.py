"""Test-only helpers: a database of its own per test on a shared PostgreSQL server; what the
relay's listening looks like from PostgreSQL."""

from __future__ import annotations

import asyncpg

from vaultline.adapters.embedded.postgres import with_database

# Sessions whose last statement was the outbox relay's LISTEN (its connection runs nothing else).
RELAY_LISTENING = """SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND query LIKE 'LISTEN %vaultline_outbox%'"""


async def _on_postgres_db(server_url: str, sql: str) -> None:
    """Run `sql` connected to the server's `postgres` database (CREATE/DROP DATABASE need one)."""
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` on the server of `server_url`; returns its URL."""
    await _on_postgres_db(server_url, f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE `name`, disconnecting whoever still uses it."""
    await _on_postgres_db(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
