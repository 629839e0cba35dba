"""Fixtures for tests that need real services: a nats-server and a PostgreSQL.

Servers start lazily (only when a test asks for them) and are stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.databases import create_database, drop_database
from vaultline.adapters.db import create_pool, migrate
from vaultline.adapters.embedded.nats import EmbeddedNats
from vaultline.adapters.embedded.postgres import EmbeddedPostgres

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_FAULTS_DIR = Path(__file__).parent / "faults"


def pytest_collection_modifyitems(config, items):
    for item in items:
        parents = Path(str(item.fspath)).parents
        if _INTEGRATION_DIR in parents:
            item.add_marker(pytest.mark.integration)
        if _FAULTS_DIR in parents:  # real servers too, and faults injected into them
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


def _pg_temp_dir() -> Path:
    # Not under pytest's tmp_path: every pytest run re-chmods /tmp/pytest-of-<user> to 0700,
    # which would lock the PostgreSQL system user out of a cluster another run is using.
    return Path(tempfile.mkdtemp(prefix="vaultline-test-pg-"))


@pytest.fixture(scope="session", autouse=True)
def pg_system_dir():
    """Running as root, EmbeddedPostgres keeps clusters under VAULTLINE_PG_SYSTEM_DIR (default
    /var/lib/vaultline): a directory of this session's, removed at its end (e2e runs inherit it)."""
    if os.environ.get("VAULTLINE_PG_SYSTEM_DIR"):
        yield Path(os.environ["VAULTLINE_PG_SYSTEM_DIR"])
        return
    base = Path(tempfile.mkdtemp(prefix="vaultline-test-system-"))
    base.chmod(0o711)  # the PostgreSQL system user traverses it, as it does /var/lib
    os.environ["VAULTLINE_PG_SYSTEM_DIR"] = str(base / "vaultline")
    try:
        yield base / "vaultline"
    finally:
        del os.environ["VAULTLINE_PG_SYSTEM_DIR"]
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- NATS


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory) -> str:
    """URL of a nats-server (JetStream, sync_interval always) shared by the whole session."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    yield server.start()
    server.stop()


@pytest.fixture
def fresh_nats(tmp_path) -> EmbeddedNats:
    """A started nats-server of the test's own, to stop/kill/restart (same URL after start())."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_url() -> str:
    """Superuser URL of a PostgreSQL server: VAULTLINE_TEST_DATABASE_URL if set, else embedded."""
    external = os.environ.get("VAULTLINE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    data_dir = _pg_temp_dir()
    server = EmbeddedPostgres(data_dir, durable=False)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def database_url(pg_url) -> str:
    """URL of a brand-new empty database, dropped after the test."""
    name = f"test_{secrets.token_hex(6)}"
    url = await create_database(pg_url, name)
    yield url
    await drop_database(pg_url, name)


@pytest.fixture
async def migrated_db(database_url):
    """A new database with every migration applied; its URL."""
    await migrate(database_url)
    return database_url


@pytest.fixture
async def pool(migrated_db):
    """A connection pool on `migrated_db`."""
    p = await create_pool(migrated_db)
    yield p
    await p.close()


@pytest.fixture
def pg_data_dir() -> Path:
    """An empty directory for a test's own EmbeddedPostgres (crash/restart tests)."""
    data_dir = _pg_temp_dir()
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- Ollama


@pytest.fixture
def ollama_server():
    """A started test Ollama (tests/ollama_server.py) on a free loopback port, fresh per test:
    `host`, `script(...)`, `responder`, `chats`, `counts`."""
    from tests.ollama_server import OllamaTestServer

    with OllamaTestServer() as server:
        yield server
