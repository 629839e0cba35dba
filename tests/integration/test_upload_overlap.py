"""Two runs of one upload never overlap (real PostgreSQL + the test Fanvue over HTTP): a
second worker, a retry request or a redelivery finds the upload busy and changes nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fanvue_server import FanvueTestServer
from tests.integration.test_upload import approval, in_review
from tests.waiting import wait_until
from vaultline.adapters.db.uploads import PostgresUploadStore
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.tokens import StaticTokenProvider, TokenSet
from vaultline.adapters.platforms import FanvuePlatform
from vaultline.adapters.storage.local import LocalStorage
from vaultline.handlers import upload

pytestmark = pytest.mark.integration


async def test_a_second_run_while_the_first_waits_on_the_platform_creates_no_second_media(settings, pool):
    (cid,) = await in_review(pool, settings.library_root, 1)
    event = approval(cid, "ppv")
    storage = LocalStorage(settings.library_root)
    with FanvueTestServer() as server:
        tokens = TokenSet.from_token_response(server.issue_tokens(), now=time.time())
        # Two workers: separate clients, separate stores on the same database.
        clients = [
            FanvueClient(StaticTokenProvider(tokens.access_token), creator="elena", base_url=server.base_url)
            for _ in range(2)
        ]
        try:

            def run(i: int):
                platform = FanvuePlatform(clients[i], ready_poll=0.05)

                async def platform_for(creator):
                    return platform

                return upload.handle(
                    event, store=PostgresUploadStore(pool), storage=storage, platform_for=platform_for,
                    vault_folder_for=lambda c, v: f"{c}-{v}",
                )  # fmt: skip

            gate = server.hold("media.complete_upload")  # the first run waits on the platform
            first = asyncio.create_task(run(0))
            await wait_until(lambda: gate.entered == 1, what="first run at complete_upload")
            with pytest.raises(upload.UploadBusy):
                await asyncio.wait_for(run(1), timeout=10)
            gate.release()
            state = await asyncio.wait_for(first, timeout=30)
        finally:
            for c in clients:
                await c.aclose()
    assert state.step == "done"
    assert server.count("media.create_upload") == 1 and len(server.completions) == 1
    assert await pool.fetchval("SELECT step FROM uploads WHERE content_id = $1", cid) == "done"
