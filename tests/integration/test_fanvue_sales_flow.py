"""The whole money line against the test Fanvue over HTTP, real PostgreSQL and nats-server: a PPV
send through the send guard, the fan buys it, and the purchase arrives three ways (the signed
webhook, purchasedAt seen by the sync loop, the earnings import). The sales handler, fed through
the stream, counts it once: content counters and fan spend move by one purchase."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import httpx
import pytest

from tests.fanvue_server import FanvueTestServer
from tests.integration.test_sends import req, uploaded
from tests.waiting import wait_until
from vaultline.adapters.db.fanvue import PostgresFanvueStore, save_account
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.tokens import StaticTokenProvider
from vaultline.adapters.platforms import FanvuePlatform
from vaultline.bootstrap import Runtime
from vaultline.domain.webhooks import sign
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app
from vaultline.handlers import sends
from vaultline.handlers.fanvue_sync import sync_creator

pytestmark = pytest.mark.integration

SECRET = "whsec_flow_0123456789abcdef"
FAN = "5939aa00-0000-4000-8000-0000000000e1"


async def test_a_purchase_seen_by_webhook_poll_and_earnings_counts_once(settings) -> None:
    settings = settings.model_copy(update={"fanvue_webhook_secret": SECRET})
    with FanvueTestServer() as fanvue:
        async with Runtime(settings, ["tracker", "sales"]) as rt, FanvueClient(
                StaticTokenProvider(fanvue.issue_tokens()["access_token"]), creator="elena",
                base_url=fanvue.base_url) as client:
            pool = rt.pool
            await save_account(pool, "elena", fanvue.user)
            (media,) = fanvue.add_ready_media(1)
            cid = await uploaded(pool, platform="fanvue", media=media)
            fanvue.fan_says(FAN, "got anything special?", handle="sam")
            result = await sends.send(req(cid, fan=FAN, price_cents=1500), store=PostgresSendStore(pool),
                                      platform=FanvuePlatform(client))
            ppv = result.message_uuid

            # The fan buys it: Fanvue delivers the webhook, the sync loop sees purchasedAt and the
            # earnings row.
            fanvue.purchase(ppv)
            fanvue.add_earning(1500, fan=FAN, source="message")
            server = AdminServer(create_app(AdminContext(token="x" * 40, services=Services.from_runtime(rt))))
            rt.add_task(server.serve())
            await wait_until(lambda: server.started, what="admin server")
            body = json.dumps({"routeUuid": ppv, "price": 1500, "recipientUuid": fanvue.user["uuid"],
                               "sender": {"uuid": FAN, "handle": "sam"},
                               "timestamp": datetime.now(timezone.utc).isoformat()}).encode()
            async with httpx.AsyncClient(base_url=server.url) as http:
                r = await http.post("/webhooks/fanvue/purchase", content=body,
                                    headers={"X-Fanvue-Signature": sign(SECRET, body, int(time.time()))})
            assert r.status_code == 200, r.text
            store = PostgresFanvueStore(pool)
            await sync_creator("elena", client, store, now=datetime.now(timezone.utc))  # sees the send as bought
            await sync_creator("elena", client, store, now=datetime.now(timezone.utc))  # nothing new
            await server.stop()

            sale_events = await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE 'sale.recorded.%'")
            assert sale_events == 2  # webhook + poll share one event id; the earnings row has its own

            async def settled() -> bool:
                done = await pool.fetchval(
                    "SELECT count(*) FROM processed_events WHERE handler = 'sales' AND event_id IN "
                    "(SELECT event_id FROM outbox WHERE subject LIKE 'sale.recorded.%')")
                return done == 2

            await wait_until(settled, timeout=30, what="the sales handler to take both sale events")
            assert await pool.fetchval("SELECT count(*) FROM sales") == 1
            content = await pool.fetchrow("SELECT times_purchased, revenue_cents FROM content WHERE id = $1", cid)
            assert (content["times_purchased"], content["revenue_cents"]) == (1, 1500)
            fan = await pool.fetchrow("SELECT lifetime_spend_cents, purchases FROM fans WHERE fan_id = $1", FAN)
            assert (fan["lifetime_spend_cents"], fan["purchases"]) == (1500, 1)
            assert await pool.fetchval("SELECT purchased_at IS NOT NULL FROM sends WHERE fan_id = $1", FAN)
