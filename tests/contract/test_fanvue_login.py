"""`vaultline fanvue login` records which Fanvue user the tokens belong to (GET /users/me), in
both forms, so a webhook's recipientUuid finds its creator. Real Postgres, test Fanvue over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from tests.fanvue_server import FanvueTestServer
from vaultline.entrypoints.fanvue_cli import _login, fanvue_app
from vaultline.settings import Settings


@pytest.fixture
def env(fanvue_cli_env: FanvueTestServer) -> FanvueTestServer:
    return fanvue_cli_env


def _rows(database_url: str, sql: str) -> list[dict]:
    async def q() -> list[dict]:
        conn = await asyncpg.connect(database_url)
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(q())


def test_access_token_login_stores_the_account(env: FanvueTestServer, database_url: str) -> None:
    grant = env.issue_tokens()
    r = CliRunner().invoke(fanvue_app, ["login", "--creator", "elena", "--access-token", grant["access_token"],
                                        "--refresh-token", grant["refresh_token"]])
    assert r.exit_code == 0, r.output
    assert env.user["uuid"] in r.output
    assert _rows(database_url, "SELECT creator, user_uuid, handle, display_name FROM fanvue_accounts") == [
        {"creator": "elena", "user_uuid": env.user["uuid"], "handle": "elena", "display_name": "Elena"}]


def test_a_second_creator_cannot_claim_the_same_account(env: FanvueTestServer, database_url: str) -> None:
    runner = CliRunner()
    grant = env.issue_tokens()
    assert runner.invoke(fanvue_app, ["login", "--creator", "elena", "--access-token", grant["access_token"]]).exit_code == 0
    r = runner.invoke(fanvue_app, ["login", "--creator", "mia", "--access-token", env.issue_tokens()["access_token"]])
    assert r.exit_code == 1 and "already connected to creator 'elena'" in r.output
    # Nothing of the refused login was stored.
    assert [row["creator"] for row in _rows(database_url, "SELECT creator FROM platform_tokens")] == ["elena"]


def test_login_with_tokens_fanvue_refuses_stores_nothing(env: FanvueTestServer, database_url: str) -> None:
    r = CliRunner().invoke(fanvue_app, ["login", "--creator", "elena", "--access-token", "not-a-token"])
    assert r.exit_code == 1 and "GET /users/me" in r.output
    assert _rows(database_url, "SELECT * FROM platform_tokens") == []
    assert _rows(database_url, "SELECT * FROM fanvue_accounts") == []


def test_interactive_login_stores_the_account(env: FanvueTestServer, database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def browser(url: str) -> bool:
        # The user's browser: the authorize page redirects to the loopback receiver.
        threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()
        return True

    monkeypatch.setattr("webbrowser.open", browser)
    tokens, me = asyncio.run(_login("elena", None, None, None, None, 0, 10, True, Settings().resolved()))
    assert tokens.access_token in env.access_tokens and me["uuid"] == env.user["uuid"]
    assert _rows(database_url, "SELECT creator, user_uuid FROM fanvue_accounts") == [
        {"creator": "elena", "user_uuid": env.user["uuid"]}]


def test_sync_once_from_the_cli(env: FanvueTestServer, database_url: str) -> None:
    runner = CliRunner()
    grant = env.issue_tokens()
    assert runner.invoke(fanvue_app, ["login", "--creator", "elena", "--access-token", grant["access_token"]]).exit_code == 0
    fan = "5939aa00-0000-4000-8000-0000000000cc"
    env.fan_says(fan, "hello there")
    env.add_earning(1299, fan=fan, source="subscription")

    r = runner.invoke(fanvue_app, ["sync", "--once", "--json"])
    assert r.exit_code == 0, r.output
    (report,) = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert (report["creator"], report["messages"], report["earnings"], report["new_events"]) == ("elena", 1, 1, 2)
    types = [row["subject"].split(".elena.")[0] for row in _rows(database_url, "SELECT subject FROM outbox ORDER BY id")]
    assert sorted(types) == ["message.received", "sale.recorded"]

    r = runner.invoke(fanvue_app, ["sync", "--once", "--creator", "elena"])
    assert r.exit_code == 0 and "0 new events" in r.output  # nothing seen twice

    r = runner.invoke(fanvue_app, ["sync", "--once", "--creator", "mia"])
    assert r.exit_code == 1 and "not logged in to Fanvue" in r.output


def test_kept_webhooks_are_listed(env: FanvueTestServer, database_url: str) -> None:
    from vaultline.adapters.db import create_pool
    from vaultline.adapters.db.fanvue import PostgresFanvueStore

    async def keep() -> None:
        pool = await create_pool(database_url)
        try:
            await PostgresFanvueStore(pool).keep_unrouted("tip", "who-is-this", "unknown recipient 'who-is-this'",
                                                          b'{"price": 100}')
        finally:
            await pool.close()

    runner = CliRunner()
    r = runner.invoke(fanvue_app, ["webhooks"])
    assert r.exit_code == 0 and "no kept webhooks" in r.output
    asyncio.run(keep())
    r = runner.invoke(fanvue_app, ["webhooks", "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert (row["event"], row["recipient_uuid"], row["deliveries"], json.loads(row["body"])) == (
        "tip", "who-is-this", 1, {"price": 100})


def test_sync_loop_started_before_any_login_waits_for_one(env: FanvueTestServer, database_url: str,
                                                          tmp_path) -> None:
    """The deployment's fanvue-sync service (`vaultline fanvue sync`, no --once) starts before
    anyone has logged in: it keeps running and syncs a creator from the pass after the login."""
    import os
    import signal
    import subprocess
    import sys

    from tests.waiting import wait_until

    log = tmp_path / "sync.log"
    proc = subprocess.Popen([sys.executable, "-m", "vaultline", "fanvue", "sync", "--interval", "1"],
                            env=os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"))  # noqa: SIM115 - closed with the process

    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"`fanvue sync` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")

    async def said_waiting() -> bool:
        alive()
        return "no creator is logged in to Fanvue yet" in log.read_text()

    async def received() -> list[str]:
        alive()
        conn = await asyncpg.connect(database_url)
        try:
            return [r["subject"] for r in await conn.fetch("SELECT subject FROM outbox")
                    if r["subject"].startswith("message.received.elena.")]
        finally:
            await conn.close()

    try:
        asyncio.run(wait_until(said_waiting, timeout=60, what="the loop saying it waits for a login"))
        grant = env.issue_tokens()
        assert CliRunner().invoke(fanvue_app, ["login", "--creator", "elena", "--access-token",
                                               grant["access_token"]]).exit_code == 0
        env.fan_says("5939aa00-0000-4000-8000-0000000000dd", "are you there?")
        assert len(asyncio.run(wait_until(received, timeout=60, what="the fan's message in the outbox"))) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
