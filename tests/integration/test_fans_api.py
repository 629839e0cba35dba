"""Fans, sends and sales over HTTP (a real socket, real PostgreSQL and nats-server, the local
platform): 201 then 409 naming the earlier send, the fan's page data, offers, sales."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from tests.integration.test_sends import PHASH, near
from tests.waiting import wait_until
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app

pytestmark = pytest.mark.integration

TOKEN = "t0k-fans"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 260), colour).save(out, "PNG")
    return out.getvalue()


async def uploaded_image(rt: Runtime, *, phash: str, category: str | None = None, colour=(200, 80, 60)) -> uuid.UUID:
    """An uploaded PPV image of elena on the local platform, its crop in storage (for thumbnails)."""
    cid = uuid.uuid4()
    key = f"elena/5_uploaded/ppv/img--{cid}.png"
    await rt.ports.storage.put(key, png(colour))
    await rt.pool.execute(
        """INSERT INTO content(id, creator, status, platform, fanvue_media_uuid, phash, vault, price_cents, category,
                               review_key, uploaded_at, original_filename)
           VALUES ($1, 'elena', 'uploaded', 'local', $2, $3, 'ppv', 999, $4, $5, now(), 'img.png')""",
        cid, f"local-{cid}", phash, category, key,
    )  # fmt: skip
    return cid


@contextlib.asynccontextmanager
async def serving(settings) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, str]]:
    async with Runtime(settings, ["sales"]) as rt:
        server = AdminServer(create_app(AdminContext(token=TOKEN, services=Services.from_runtime(rt))))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield rt, http, server.url
        await server.stop()


async def test_send_over_http_refuses_the_second_time_and_the_fan_page_shows_it(settings):
    settings = settings.model_copy(update={"default_creator": "elena"})
    async with serving(settings) as (rt, http, _):
        a = await uploaded_image(rt, phash=PHASH, category="lingerie")
        copy = await uploaded_image(rt, phash=near(PHASH, 2))
        other = await uploaded_image(rt, phash=near(PHASH, 30), category="beach")

        assert (await http.post("/api/sends", json={"fan_id": "fan-1", "content_ids": [str(a)]})).status_code == 401
        r = await http.post("/api/sends", headers=AUTH,
                            json={"fan_id": "fan-1", "content_ids": [str(a)], "price_cents": 1299, "text": "hi"})  # fmt: skip
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["status"] == "sent" and sent["message_uuid"] and sent["event_ids"]

        from vaultline.adapters.metrics import SENDS

        refused_before = SENDS.labels("refused")._value.get()
        again = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(a)]})
        assert again.status_code == 409 and str(a) in again.json()["error"] and "already has" in again.json()["error"]
        nearly = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(copy)]})
        assert nearly.status_code == 409 and "near-copy" in nearly.json()["error"]
        assert SENDS.labels("refused")._value.get() - refused_before == 2  # vaultline_sends_total{result="refused"}
        bad = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(other)], "price_cents": 100})
        assert bad.status_code == 400 and "300" in bad.json()["error"]
        assert (await http.post("/api/sends", headers=AUTH, json={"fan_id": "x y", "content_ids": [str(a)]})).status_code == 400
        forced = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(copy)],
                                                                  "force": True, "reason": "asked twice"})  # fmt: skip
        assert forced.status_code == 201 and forced.json()["forced"]

        fans = (await http.get("/api/fans", headers=AUTH)).json()
        assert [(f["fan_id"], f["received"]) for f in fans] == [("fan-1", 2)]
        detail = (await http.get("/api/fans/fan-1", headers=AUTH)).json()
        by = {x["content_id"]: x for x in detail["received"]}
        assert by[str(a)]["price_cents"] == 1299 and not by[str(a)]["bought"] and by[str(copy)]["forced"]
        thumb = await http.get(by[str(a)]["thumb"], headers=AUTH)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        offers = (await http.get("/api/fans/fan-1/offers", headers=AUTH)).json()
        assert [o["content_id"] for o in offers["offers"]] == [str(other)] and offers["platform"] == "local"
        assert (await http.get("/api/fans/nobody", headers=AUTH)).status_code == 404

        page = await http.get("/fans", headers=AUTH)
        assert page.status_code == 200 and "fans.js" in page.text and 'data-nav="fans" aria-current="page"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "/api/sends" in (await http.get("/openapi.json", headers=AUTH)).json()["paths"]
        assert (await http.get("/api/sales", headers=AUTH)).json() == []
