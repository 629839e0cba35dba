"""Approved images to the platform, exactly once, on real NATS + PostgreSQL + HTTP."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.fanvue_server import FanvueTestServer
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.oauth import OAuthClient
from vaultline.adapters.fanvue.tokens import InMemoryTokenStore, TokenManager, TokenSet
from vaultline.adapters.platforms import FanvuePlatform
from vaultline.bootstrap import Runtime
from vaultline.events import new_event

pytestmark = pytest.mark.integration


async def in_review(pool, library_root, n: int, creator: str = "elena") -> list[uuid.UUID]:
    """n content rows waiting in review, their stripped crops in 3_review/."""
    ids = []
    for i in range(n):
        cid = uuid.uuid4()
        name = f"img{i:02d}--{cid}.png"
        path = library_root / creator / "3_review" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG fake crop %d " % i + cid.bytes * 64)
        await pool.execute(
            "INSERT INTO content(id, creator, status, review_key, original_filename, status_at) "
            "VALUES ($1, $2, 'in_review', $3, $4, now() - interval '1 minute')",
            cid, creator, f"{creator}/3_review/{name}", f"img{i:02d}.png",
        )  # fmt: skip
        ids.append(cid)
    return ids


def approval(cid: uuid.UUID, vault: str):
    return new_event(
        "image.approved", creator="elena", key=cid,
        payload={"vault": vault, "price_cents": 999 if vault == "ppv" else None},
    )  # fmt: skip


async def test_twenty_approvals_with_faults_give_twenty_media_in_the_right_folders(settings, pool):
    vaults = ["feed", "ppv", "archive", "ppv"] * 5
    with FanvueTestServer(seed=11) as server:
        store = InMemoryTokenStore()
        await store.save("elena", TokenSet.from_token_response(server.issue_tokens(), now=time.time()))
        async with OAuthClient(server.client_id, server.client_secret, token_url=server.token_url) as oauth:
            client = FanvueClient(
                TokenManager(store, oauth.refresh_tokens, "elena"), creator="elena", base_url=server.base_url,
                timeout=0.5, part_timeout=2.0, max_retry_wait=2.0, backoff_base=0.05,
            )  # fmt: skip
            platform = FanvuePlatform(client, ready_timeout=30, ready_poll=0.05)

            async def platforms(creator):
                return platform

            platforms.close = client.aclose
            ids = await in_review(pool, settings.library_root, 20)
            # One call in five fails: 429 with Retry-After, 500, or too slow; plus an expired token.
            server.set_random_faults(0.2, kinds=("429", "500", "slow"), seed=5, retry_after="1", delay=1.0)
            server.inject("401", n=1)
            async with Runtime(settings, ["tracker", "upload"], platforms=platforms) as rt:
                for cid, vault in zip(ids, vaults):
                    await rt.publisher.publish(approval(cid, vault))
                await wait_until(
                    lambda: pool.fetchval("SELECT count(*) = 20 FROM content WHERE status = 'uploaded'"),
                    timeout=180, what="20 uploads",
                )  # fmt: skip
                uploaded = [se.event async for se in read_events(rt.ports.js, subject="media.uploaded.>")]
            server.clear_faults()
            faults = sum(server.faults_served.values())

    assert faults, "the run must actually have seen injected faults"
    assert len(server.completions) == 20  # 20 platform media, not one more
    ready = [m for m in server.media.values() if m["status"] == "ready"]
    assert len(ready) == 20
    assert len(uploaded) == 20 and len({e.key for e in uploaded}) == 20  # 0 duplicates
    by_content = {uuid.UUID(e.key): e.payload for e in uploaded}
    for cid, vault in zip(ids, vaults):
        p = by_content[cid]
        assert p.vault == vault and p.vault_folder == f"elena-{vault}"
        assert p.media_uuid in server.folders[f"elena-{vault}"]["media"]
    assert Counter(len(f["media"]) for f in server.folders.values()) == Counter({10: 1, 5: 2})
    rows = await pool.fetch("SELECT * FROM content WHERE id = ANY($1::uuid[])", ids)
    assert all(r["fanvue_media_uuid"] == by_content[r["id"]].media_uuid and r["uploaded_at"] for r in rows)
    assert all(r["fanvue_vault"] == f"elena-{r['vault']}" for r in rows)
    for r in rows:
        name = r["review_key"].rsplit("/", 1)[-1]
        assert (settings.library_root / "elena" / "5_uploaded" / r["vault"] / name).exists()
    assert await pool.fetchval("SELECT count(*) FROM uploads WHERE step = 'done'") == 20


async def test_without_credentials_uploads_go_to_the_local_platform(settings, pool):
    (cid,) = await in_review(pool, settings.library_root, 1)
    async with Runtime(settings, ["tracker", "upload"]) as rt:
        await rt.publisher.publish(approval(cid, "ppv"))
        row = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='uploaded'", cid), timeout=60
        )
    assert row["platform"] == "local" and uuid.UUID(row["fanvue_media_uuid"])
    assert row["fanvue_vault"] == "elena-ppv"
    name = row["review_key"].rsplit("/", 1)[-1]
    assert (settings.library_root / "elena" / "5_uploaded" / "ppv" / name).exists()
    assert not (settings.library_root / "elena" / "3_review" / name).exists()


async def test_a_refused_upload_is_visible_and_can_be_retried(settings, pool):
    (cid,) = await in_review(pool, settings.library_root, 1)
    with FanvueTestServer(seed=3) as server:
        store = InMemoryTokenStore()
        await store.save("elena", TokenSet.from_token_response(server.issue_tokens(), now=time.time()))
        async with OAuthClient(server.client_id, server.client_secret, token_url=server.token_url) as oauth:
            client = FanvueClient(TokenManager(store, oauth.refresh_tokens, "elena"), creator="elena",
                                  base_url=server.base_url, timeout=2.0)  # fmt: skip
            platform = FanvuePlatform(client, ready_poll=0.05)

            async def platforms(creator):
                return platform

            platforms.close = client.aclose
            server.inject("error", n=1, endpoint="vault.create", status=403,
                          body={"message": "missing scope write:vault"})  # fmt: skip
            async with Runtime(settings, ["tracker", "upload"], platforms=platforms) as rt:
                await rt.publisher.publish(approval(cid, "feed"))
                row = await wait_until(
                    lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='upload_failed'", cid),
                    timeout=60,
                )  # fmt: skip
                assert "missing scope" in row["error"]
                # The operator presses retry: a decision through the outbox, like the page does.
                from vaultline.handlers import review

                await review.retry_upload(rt.ports.uow, cid, "operator")
                row = await wait_until(
                    lambda: pool.fetchrow("SELECT * FROM content WHERE id=$1 AND status='uploaded'", cid), timeout=60
                )
    assert len(server.completions) == 1
    assert row["fanvue_media_uuid"] in server.folders["elena-feed"]["media"]
