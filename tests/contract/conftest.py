"""Shared fixtures for contract tests: a real S3 API (moto's threaded server on loopback).

- `s3_endpoint` (session): "http://127.0.0.1:<port>" of one moto server for the whole run.
- `s3_credentials` (session): fake access/secret key and region moto accepts.
- `s3_bucket` (function): a fresh, empty bucket on that server, so tests never see each
  other's objects.
- `s3_storage` (function): an opened S3Storage on that bucket, closed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

S3_CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    # Port 0: the kernel picks a free port, so parallel runs never collide.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    return dict(S3_CREDENTIALS)


@pytest.fixture(scope="session")
def _s3_admin(s3_endpoint: str, s3_credentials: dict[str, str]) -> Iterator[object]:
    # One sync boto3 client for creating/dropping test buckets (client creation is slow).
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=s3_credentials["region"],
        aws_access_key_id=s3_credentials["access_key"],
        aws_secret_access_key=s3_credentials["secret_key"],
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def s3_bucket(_s3_admin) -> Iterator[str]:
    client = _s3_admin
    name = f"vl-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        # Empty and drop it so a long session does not accumulate objects in moto's memory.
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []) or []:
                client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)


@pytest.fixture
async def s3_storage(s3_endpoint: str, s3_bucket: str, s3_credentials: dict[str, str]) -> AsyncIterator[object]:
    from vaultline.adapters.storage.s3 import S3Storage

    storage = S3Storage(
        s3_bucket,
        endpoint_url=s3_endpoint,
        region=s3_credentials["region"],
        access_key=s3_credentials["access_key"],
        secret_key=s3_credentials["secret_key"],
    )
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


# --------------------------------------------------------------------------- Fanvue


@pytest.fixture
def fanvue_server() -> Iterator[object]:
    """A started test Fanvue (tests/fanvue_server.py) on a free loopback port, fresh state per
    test: `base_url`, `token_url`, `authorize_url`, `issue_tokens()`, `inject(...)`, `counts`."""
    from tests.fanvue_server import FanvueTestServer

    with FanvueTestServer() as server:
        yield server


@pytest.fixture
def fanvue_cli_env(fanvue_server, database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> object:
    """For `vaultline fanvue ...` commands: a migrated database and every VAULTLINE_* setting
    pointing at the test Fanvue (data dir = tmp_path, no VAULTLINE_SECRET_KEY). Returns the server."""
    import asyncio

    from vaultline.adapters.db import migrate

    asyncio.run(migrate(database_url))
    monkeypatch.delenv("VAULTLINE_SECRET_KEY", raising=False)
    monkeypatch.setenv("VAULTLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("VAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VAULTLINE_FANVUE_BASE_URL", fanvue_server.base_url)
    monkeypatch.setenv("VAULTLINE_FANVUE_TOKEN_URL", fanvue_server.token_url)
    monkeypatch.setenv("VAULTLINE_FANVUE_AUTH_URL", fanvue_server.authorize_url)
    monkeypatch.setenv("VAULTLINE_FANVUE_CLIENT_ID", fanvue_server.client_id)
    monkeypatch.setenv("VAULTLINE_FANVUE_CLIENT_SECRET", fanvue_server.client_secret)
    return fanvue_server
