"""POST /webhooks/fanvue/{event} over a real socket, with real PostgreSQL and nats-server: the
signature decides (401, nothing recorded), a valid delivery reaches the stream once however often
Fanvue sends it, an unknown recipient is answered 2xx and kept, and no admin token is needed."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.adapters.db.fanvue import save_account
from vaultline.bootstrap import Runtime
from vaultline.domain.webhooks import fact_event_id, purchase_key, sign
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app

pytestmark = pytest.mark.integration

SECRET = "whsec_http"
CREATOR_UUID = "f4b2aa00-0000-4000-8000-0000000000f1"
FAN = "5939aa00-0000-4000-8000-0000000000f2"


@dataclass
class Api:
    rt: Runtime
    http: httpx.AsyncClient

    async def deliver(self, event: str, body: dict[str, Any], *, secret: str = SECRET, t: int | None = None,
                      header: str | None = None, raw: bytes | None = None) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        sig = header if header is not None else sign(secret, data, t if t is not None else int(time.time()))
        return await self.http.post(f"/webhooks/fanvue/{event}", content=data,
                                    headers={"X-Fanvue-Signature": sig, "Content-Type": "application/json"})


@contextlib.asynccontextmanager
async def serving(settings) -> AsyncIterator[Api]:
    settings = settings.model_copy(update={"fanvue_webhook_secret": SECRET})
    async with Runtime(settings, ["tracker"]) as rt:
        await save_account(rt.pool, "elena", {"uuid": CREATOR_UUID, "handle": "elena"})
        server = AdminServer(create_app(AdminContext(token="admin-secret", services=Services.from_runtime(rt))))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield Api(rt, http)
        await server.stop()


async def _stream(js, subject: str) -> list[Any]:
    return [se.event async for se in read_events(js, subject=subject)]


async def _published(pool) -> bool:
    return await pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")


PURCHASE = {"routeUuid": "r-77", "price": 1999, "recipientUuid": CREATOR_UUID,
            "sender": {"uuid": FAN, "handle": "sam", "displayName": "Sam"}, "timestamp": "2026-01-02T03:04:05Z"}


async def test_valid_webhook_reaches_the_stream_once(settings, js) -> None:
    async with serving(settings) as api:
        first = await api.deliver("purchase", PURCHASE)  # no admin token: the signature is the auth
        again = await api.deliver("purchase", PURCHASE, t=int(time.time()) + 5)  # Fanvue's retry
        assert first.status_code == 200 and again.status_code == 200
        eid = str(fact_event_id("sale.recorded", purchase_key("r-77")))
        assert first.json() == {"status": "recorded", "events": [eid], "new": 1, "reason": None}
        assert again.json()["new"] == 0 and again.json()["events"] == [eid]
        await wait_until(lambda: _published(api.rt.pool), what="the relay to publish")
        events = await _stream(js, f"sale.recorded.elena.{FAN}")
        assert [str(e.event_id) for e in events] == [eid]
        sale = events[0].payload
        assert (sale.kind, sale.gross_cents, sale.route_uuid, sale.fan.handle, sale.source) == (
            "purchase", 1999, "r-77", "sam", "webhook")


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "tampered", "missing", "garbled"])
async def test_bad_signature_is_401_and_records_nothing(settings, case: str) -> None:
    data = json.dumps(PURCHASE).encode()
    now = int(time.time())
    async with serving(settings) as api:
        kw: dict[str, Any] = {
            "wrong_secret": {"secret": "nope"},
            "stale": {"t": now - 301},
            "tampered": {"raw": data.replace(b"1999", b"1"), "header": sign(SECRET, data, now)},
            "missing": {"header": ""},
            "garbled": {"header": "v0=abc;t=1"},
        }[case]
        r = await api.deliver("purchase", PURCHASE, **kw)
        assert r.status_code == 401 and "signature" in r.json()["error"]
        assert await api.rt.pool.fetchval("SELECT count(*) FROM outbox") == 0
        assert await api.rt.pool.fetchval("SELECT count(*) FROM fanvue_unrouted_webhooks") == 0


async def test_unknown_recipient_is_2xx_kept_and_not_published(settings) -> None:
    body = {**PURCHASE, "recipientUuid": "not-one-of-ours"}
    async with serving(settings) as api:
        r = await api.deliver("purchase", body)
        assert r.status_code == 202 and r.json()["status"] == "unknown_recipient" and r.json()["events"] == []
        assert await api.rt.pool.fetchval("SELECT count(*) FROM outbox") == 0
        row = await api.rt.pool.fetchrow("SELECT event, recipient_uuid, body FROM fanvue_unrouted_webhooks")
        assert (row["event"], row["recipient_uuid"]) == ("purchase", "not-one-of-ours")
        assert json.loads(bytes(row["body"])) == body


async def test_unknown_event_and_unreadable_body(settings) -> None:
    async with serving(settings) as api:
        r = await api.deliver("refund", PURCHASE)
        assert r.status_code == 404 and "known: message-received" in r.json()["error"]
        r = await api.deliver("tip", {"recipientUuid": CREATOR_UUID, "price": 100})  # names no fan
        assert r.status_code == 400 and "kept for inspection" in r.json()["error"]
        assert await api.rt.pool.fetchval("SELECT count(*) FROM outbox") == 0
        assert await api.rt.pool.fetchval("SELECT count(*) FROM fanvue_unrouted_webhooks") == 1
        r = await api.deliver("tip", {}, raw=b'{"x": "' + b"a" * (1024 * 1024) + b'"}')
        assert r.status_code == 413
        assert await api.rt.pool.fetchval("SELECT count(*) FROM fanvue_unrouted_webhooks") == 1
        # Every other route still needs the admin token.
        assert (await api.http.get("/api/status")).status_code == 401
