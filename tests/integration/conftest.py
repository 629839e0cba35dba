"""Fixtures for tests against a real nats-server and a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultline.adapters.bus.stream import connect
from vaultline.adapters.bus.topology import ADVISORIES_STREAM, EVENTS_STREAM
from vaultline.settings import Settings


@pytest.fixture
async def js(nats_url):
    """A JetStream context on the shared test server with the vaultline streams removed, so
    every test starts from an empty audit trail."""
    nc, js = await connect(nats_url)
    for name in (EVENTS_STREAM, ADVISORIES_STREAM):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    yield js
    await nc.close()


@pytest.fixture
def settings(nats_url, migrated_db, js, tmp_path):
    return Settings(
        nats_url=nats_url,
        database_url=migrated_db,
        data_dir=tmp_path,
        max_deliver=4,
        retry_base_delay=0.1,
        retry_max_delay=2.0,
    )


@pytest.fixture
def comfy_dir(tmp_path) -> Path:
    """An empty ComfyUI output folder."""
    d = tmp_path / "comfy" / "output"
    d.mkdir(parents=True)
    return d
