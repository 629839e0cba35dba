"""The review API over a real socket, against real PostgreSQL and a real nats-server:
auth, listing, history from the stream, images, and decisions that reach the stream once."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image

from tests.integration.test_bus import relay_dies_before_marking
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import JetStreamPublisher, make_broker
from vaultline.adapters.bus.stream import history_subject, read_events
from vaultline.adapters.outbox import OutboxRelay
from vaultline.bootstrap import Runtime
from vaultline.domain import library
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app
from vaultline.events import new_event

pytestmark = pytest.mark.integration

TOKEN = "t0k-review"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(width: int = 832, height: int = 1216, colour: tuple[int, int, int] = (200, 80, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


async def into_review(rt: Runtime, creator: str, cid: uuid.UUID, *, generated: dict, cropped: dict, what: str) -> None:
    """Publish image.generated and then image.cropped (caused by it) for `cid` with these payloads,
    and wait until the tracker has put the image in review."""
    g = new_event("image.generated", creator=creator, key=cid, payload=generated)
    c = new_event("image.cropped", creator=creator, key=cid, cause=g, payload=cropped)
    await rt.ports.publisher.publish(g)
    await rt.ports.publisher.publish(c)
    await wait_until(
        lambda: rt.pool.fetchval("SELECT 1 FROM content WHERE id=$1 AND status='in_review'", cid), what=what
    )


@dataclass
class Api:
    rt: Runtime
    http: httpx.AsyncClient
    url: str

    async def seed(self, creator: str = "elena", *, generated: dict | None = None, cropped: dict | None = None) -> uuid.UUID:
        """One image in review: files in storage, then image.generated + image.cropped through
        the stream, projected by the tracker like in production."""
        cid = uuid.uuid4()
        name = library.file_name("ComfyUI_00042_.png", cid)
        raw, crop, rev = (library.key(creator, stage, name) for stage in (library.RAW, library.CROPPED, library.REVIEW))
        storage = self.rt.ports.storage
        await storage.put(raw, png(colour=(10, 20, 30)))
        await storage.put(crop, png(832, 900))
        await storage.put(rev, png(832, 900))
        await into_review(
            self.rt, creator, cid,
            generated={"storage_key": raw, "sha256": uuid.uuid4().hex * 2, "phash": "00ff00ff00ff00ff",
                       "size_bytes": 1000, "original_filename": "ComfyUI_00042_.png", "width": 832, "height": 1216,
                       "comfy": {"seed": 7, "positive_prompt": "portrait"}, **(generated or {})},
            cropped={"cropped_key": crop, "review_key": rev, "mode_used": "chin", "face_found": True, "faces": 1,
                     "cut_y": 900, "confidence": 0.93, **(cropped or {})},
            what="the tracker to put the image in review",
        )  # fmt: skip
        return cid

    async def outbox(self, cid: uuid.UUID) -> list[str]:
        rows = await self.rt.pool.fetch("SELECT subject FROM outbox WHERE subject LIKE $1 ORDER BY id", f"%.{cid}")
        return [r["subject"].split(".")[1] for r in rows]


@contextlib.asynccontextmanager
async def serving(settings, *, relay: bool = True) -> AsyncIterator[Api]:
    async with Runtime(settings, ["tracker"], relay=relay) as rt:
        ctx = AdminContext(token=TOKEN, services=Services.from_runtime(rt))
        server = AdminServer(create_app(ctx))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield Api(rt, http, server.url)
        await server.stop()


async def stream_types(js, cid: uuid.UUID) -> list[str]:
    return [se.event.type async for se in read_events(js, subject=history_subject(str(cid)))]


async def all_published(pool) -> bool:
    return await pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")


# --------------------------------------------------------------------------- auth


async def test_token_cookie_and_cross_site_rules(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        assert (await api.http.get("/api/content")).status_code == 401
        r = await api.http.get("/api/content", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403 and r.json() == {"error": "wrong admin token"}
        login = await api.http.post("/login", data={"token": TOKEN})
        cookie = {"Cookie": f"vaultline_admin={login.cookies['vaultline_admin']}"}
        assert (await api.http.get("/api/content", headers=cookie)).status_code == 200
        raw_token = {"Cookie": f"vaultline_admin={TOKEN}"}  # the cookie holds a session id, never the token
        assert (await api.http.get("/api/content", headers=raw_token)).status_code == 403
        assert (await api.http.get("/api/status", headers={"Cookie": "vaultline_admin=nope"})).status_code == 403

        body = {"reason": "not today"}
        evil = await api.http.post(f"/api/content/{cid}/reject", json=body, headers=cookie | {"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "cross-site" in evil.json()["error"]
        no_origin = await api.http.post(f"/api/content/{cid}/reject", json=body, headers=cookie)
        assert no_origin.status_code == 403
        assert await api.outbox(cid) == []  # refused before anything was written

        same = await api.http.post(f"/api/content/{cid}/reject", json=body, headers=cookie | {"Origin": api.url})
        assert same.status_code == 200, same.text
        assert same.json()["status"] == "rejected"


# --------------------------------------------------------------------------- reads


async def test_list_filters_and_pages_newest_first(settings):
    async with serving(settings) as api:
        plain = await api.seed()
        manual = await api.seed(cropped={"needs_manual_crop": True})
        fallback = await api.seed(cropped={"mode_used": "fallback", "face_found": False, "faces": 0,
                                           "confidence": None, "fallback_reason": "no trustworthy face"})  # fmt: skip
        dup = await api.seed(generated={"near_duplicate_of": str(plain), "phash_distance": 3})
        nina = await api.seed("nina")
        await api.http.post(f"/api/content/{plain}/approve", json={"vault": "feed"}, headers=AUTH)

        ids, cursor, pages = [], None, 0
        while True:
            params = {"status": "in_review", "limit": 2} | ({"cursor": cursor} if cursor else {})
            r = await api.http.get("/api/content", params=params, headers=AUTH)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 2
            ids += [i["id"] for i in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = await api.rt.pool.fetch(
            "SELECT id FROM content WHERE status='in_review' ORDER BY created_at DESC, id DESC"
        )
        assert ids == [str(r["id"]) for r in expected]
        assert set(ids) == {str(x) for x in (manual, fallback, dup, nina)} and pages == 2

        async def listed(**params) -> set[str]:
            r = await api.http.get("/api/content", params=params, headers=AUTH)
            assert r.status_code == 200, r.text
            return {i["id"] for i in r.json()["items"]}

        assert await listed(status="in_review", creator="nina") == {str(nina)}
        assert await listed(status="in_review", flag="needs_manual_crop") == {str(manual)}
        assert await listed(status="in_review", flag="fallback") == {str(fallback)}
        assert await listed(status="in_review", flag="near_duplicate") == {str(dup)}
        assert await listed(status="in_review", flag="face") == {str(manual), str(dup), str(nina)}
        assert await listed(status="approved") == {str(plain)}
        assert len(await listed()) == 5

        r = await api.http.get("/api/content", params={"status": "in_review", "flag": "fallback"}, headers=AUTH)
        [item] = r.json()["items"]
        assert item["badges"] == ["fallback"] and item["crop_mode_used"] == "fallback"
        assert item["images"] == {v: f"/api/content/{fallback}/image?variant={v}" for v in ("cropped", "original", "thumb")}
        assert item["comfy"] == {"seed": 7, "checkpoint": None, "positive_prompt": "portrait", "prompt_id": None}
        assert item["tags"] == [] and item["needs_manual_crop"] is False and item["width"] == 832

        for params, word in (({"cursor": "garbage"}, "cursor"), ({"status": "lost"}, "status"),
                             ({"flag": "shiny"}, "flag"), ({"limit": "many"}, "limit"), ({"limit": 0}, "limit"),
                             ({"creator": "Not A Slug"}, "creator")):  # fmt: skip
            r = await api.http.get("/api/content", params=params, headers=AUTH)
            assert r.status_code == 400 and word in r.json()["error"], (params, r.text)


async def test_item_with_history_from_the_stream(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        r = await api.http.get(f"/api/content/{cid}", headers=AUTH)
        assert r.status_code == 200, r.text
        item = r.json()
        assert item["id"] == str(cid) and item["status"] == "in_review" and item["crop_confidence"] == 0.93
        assert [h["type"] for h in item["history"]] == ["image.generated", "image.cropped"]
        assert item["history"][1]["payload"]["cut_y"] == 900
        assert item["history"][0]["seq"] < item["history"][1]["seq"]
        assert all(set(h) == {"seq", "type", "occurred_at", "event_id", "payload"} for h in item["history"])

        await api.http.post(f"/api/content/{cid}/approve", json={"vault": "feed"}, headers=AUTH)
        await wait_until(lambda: all_published(api.rt.pool), what="the relay")
        item = (await api.http.get(f"/api/content/{cid}", headers=AUTH)).json()
        assert [h["type"] for h in item["history"]][-1] == "image.approved"
        assert item["history"][-1]["payload"]["reviewer"] == "admin"

        assert (await api.http.get(f"/api/content/{uuid.uuid4()}", headers=AUTH)).status_code == 404
        r = await api.http.get("/api/content/not-an-id", headers=AUTH)
        assert r.status_code == 400 and "not a content id" in r.json()["error"]


async def test_image_bytes_and_a_cached_thumbnail(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        row = await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid)
        storage = api.rt.ports.storage
        cropped = await api.http.get(f"/api/content/{cid}/image", params={"variant": "cropped"}, headers=AUTH)
        assert cropped.status_code == 200 and cropped.headers["content-type"] == "image/png"
        assert cropped.content == await storage.get(row["review_key"])
        original = await api.http.get(f"/api/content/{cid}/image", params={"variant": "original"}, headers=AUTH)
        assert original.content == await storage.get(row["raw_key"])

        thumb = await api.http.get(f"/api/content/{cid}/image", params={"variant": "thumb"}, headers=AUTH)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as im:
            assert im.format == "JPEG" and im.width == 320 and im.height == round(900 * 320 / 832)
        cached = list((settings.data_dir / "cache" / "thumbs").glob(f"{cid}-*.jpg"))
        assert len(cached) == 1 and cached[0].read_bytes() == thumb.content

        # Served from the cache from now on: even with every source file gone.
        for key in (row["review_key"], row["cropped_key"], row["raw_key"]):
            await storage.delete(key)
        again = await api.http.get(f"/api/content/{cid}/image", params={"variant": "thumb"}, headers=AUTH)
        assert again.status_code == 200 and again.content == thumb.content
        gone = await api.http.get(f"/api/content/{cid}/image", params={"variant": "cropped"}, headers=AUTH)
        assert gone.status_code == 404 and "not in storage" in gone.json()["error"]
        bad = await api.http.get(f"/api/content/{cid}/image", params={"variant": "huge"}, headers=AUTH)
        assert bad.status_code == 400
        unknown = await api.http.get(f"/api/content/{uuid.uuid4()}/image", headers=AUTH)
        assert unknown.status_code == 404


async def test_cropped_image_still_served_after_the_review_file_moved(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        row = await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid)
        name = row["review_key"].rsplit("/", 1)[-1]
        await api.rt.ports.storage.move(row["review_key"], f"elena/4_approved/feed/{name}")
        r = await api.http.get(f"/api/content/{cid}/image", headers=AUTH)
        assert r.status_code == 200 and r.content == await api.rt.ports.storage.get(row["cropped_key"])


# --------------------------------------------------------------------------- decisions


async def test_approve_reaches_the_stream_once(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        body = {"vault": "ppv", "price_cents": 1299, "tags": ["red", "lingerie"], "category": "lingerie",
                "description": "red set", "post": {"audience": "subscribers", "text": "new!"}}  # fmt: skip
        r = await api.http.post(f"/api/content/{cid}/approve", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        item = r.json()
        assert item["status"] == "approved" and item["vault"] == "ppv" and item["price_cents"] == 1299
        assert item["tags"] == ["red", "lingerie"] and item["category"] == "lingerie"
        assert await api.outbox(cid) == ["approved"]
        row_after_decision = dict(await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid))

        await wait_until(lambda: all_published(api.rt.pool), what="the relay to publish")
        assert await stream_types(api.rt.ports.js, cid) == ["image.generated", "image.cropped", "image.approved"]

        again = await api.http.post(f"/api/content/{cid}/approve", json=body, headers=AUTH)
        assert again.status_code == 409 and "already decided" in again.json()["error"]
        reject = await api.http.post(f"/api/content/{cid}/reject", json={"reason": "oops"}, headers=AUTH)
        assert reject.status_code == 409
        assert await api.outbox(cid) == ["approved"]

        # The tracker projects the event from the stream onto a row that already shows it.
        [event_id] = await api.rt.pool.fetch("SELECT event_id FROM outbox WHERE subject LIKE $1", f"%.{cid}")
        await wait_until(
            lambda: api.rt.pool.fetchval(
                "SELECT 1 FROM processed_events WHERE handler='tracker' AND event_id=$1", event_id["event_id"]
            ),
            what="the tracker to see the approval",
        )
        row = dict(await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid))
        assert {k: v for k, v in row.items() if k != "updated_at"} == {
            k: v for k, v in row_after_decision.items() if k != "updated_at"
        }
        assert await stream_types(api.rt.ports.js, cid) == ["image.generated", "image.cropped", "image.approved"]


async def test_concurrent_decisions_on_one_image_make_exactly_one(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        bodies = [("approve", {"vault": "feed"}), ("reject", {"reason": "no"})] * 4
        responses = await asyncio.gather(
            *(api.http.post(f"/api/content/{cid}/{action}", json=body, headers=AUTH) for action, body in bodies)
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] + [409] * 7, [r.text for r in responses]
        assert len(await api.outbox(cid)) == 1


async def test_reject_recrop_and_tags(settings):
    async with serving(settings) as api:
        rejected, recropped = await api.seed(), await api.seed()
        r = await api.http.post(f"/api/content/{rejected}/reject", json={"reason": "hands"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["reject_reason"] == "hands"
        r = await api.http.post(f"/api/content/{recropped}/recrop", json={"mode": "lips_only"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "recrop_requested"
        assert r.json()["requested_crop_mode"] == "lips_only"
        assert await api.outbox(rejected) == ["rejected"] and await api.outbox(recropped) == ["recrop_requested"]

        r = await api.http.post(f"/api/content/{rejected}/tags", json={"tags": ["keep", "for", "later"]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["tags"] == ["keep", "for", "later"]
        assert r.json()["status"] == "rejected"
        assert await api.outbox(rejected) == ["rejected"]  # tags write no event

        await wait_until(lambda: all_published(api.rt.pool), what="the relay")
        assert (await stream_types(api.rt.ports.js, recropped))[-1] == "image.recrop_requested"


async def test_validation_errors_are_400_with_a_message_and_write_nothing(settings):
    async with serving(settings) as api:
        cid = await api.seed()
        before = dict(await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid))
        cases = [
            ("approve", {"vault": "vip"}, "vault"),
            ("approve", {"vault": "ppv"}, "ppv approval needs a positive price_cents"),
            ("approve", {"vault": "ppv", "price_cents": -1}, "price_cents"),
            ("approve", {"vault": "feed", "tags": ["x" * 65]}, "tags must be 1-64 characters"),
            ("approve", {"vault": "feed", "mood": "happy"}, "mood"),
            ("reject", {"reason": ""}, "reason"),
            ("reject", {"reason": "x", "vault": "feed"}, "unexpected field"),
            ("recrop", {"mode": "sideways"}, "mode"),
            ("tags", {"tags": "a,b"}, "tags must be a list"),
            ("tags", {}, "tags is required"),
        ]
        for action, body, word in cases:
            r = await api.http.post(f"/api/content/{cid}/{action}", json=body, headers=AUTH)
            assert r.status_code == 400, (action, body, r.text)
            assert word in r.json()["error"], (action, body, r.text)
        r = await api.http.post(f"/api/content/{cid}/approve", content=b"{not json", headers=AUTH)
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        r = await api.http.post(f"/api/content/{cid}/approve", json=["feed"], headers=AUTH)
        assert r.status_code == 400
        assert dict(await api.rt.pool.fetchrow("SELECT * FROM content WHERE id=$1", cid)) == before
        assert await api.rt.pool.fetchval("SELECT count(*) FROM outbox") == 0

        unknown = uuid.uuid4()
        for action, body in (("approve", {"vault": "feed"}), ("reject", {"reason": "x"}), ("recrop", {"mode": "chin"}),
                             ("tags", {"tags": ["a"]})):  # fmt: skip
            r = await api.http.post(f"/api/content/{unknown}/{action}", json=body, headers=AUTH)
            assert r.status_code == 404 and str(unknown) in r.json()["error"]


async def test_bulk_reports_each_id(settings):
    async with serving(settings) as api:
        a, b, decided = await api.seed(), await api.seed(), await api.seed()
        await api.http.post(f"/api/content/{decided}/reject", json={"reason": "no"}, headers=AUTH)
        unknown = uuid.uuid4()
        ids = [str(a), str(decided), str(unknown), "nope", str(b)]
        r = await api.http.post(
            "/api/review/bulk", json={"ids": ids, "action": "approve", "vault": "ppv", "price_cents": 500}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["id"] for x in results] == ids
        assert [(x["ok"], x["status"]) for x in results] == [(True, 200), (False, 409), (False, 404), (False, 400), (True, 200)]
        assert all(x["error"] for x in results if not x["ok"])
        assert await api.outbox(a) == ["approved"] and await api.outbox(b) == ["approved"]
        assert await api.outbox(decided) == ["rejected"]
        assert await api.rt.pool.fetchval("SELECT price_cents FROM content WHERE id=$1", b) == 500

        c = await api.seed()
        r = await api.http.post("/api/review/bulk", json={"ids": [str(c)], "action": "reject", "reason": "dup"}, headers=AUTH)
        assert r.json()["results"] == [{"id": str(c), "ok": True, "status": 200}]

        # A bad decision is refused as a whole, before any id is touched.
        d = await api.seed()
        for body, word in (({"ids": [str(d)], "action": "approve", "vault": "ppv"}, "price_cents"),
                           ({"ids": [str(d)], "action": "reject"}, "reason"),
                           ({"ids": [str(d)], "action": "delete"}, "action"),
                           ({"ids": [], "action": "reject", "reason": "x"}, "ids"),
                           ({"ids": [str(d)], "action": "reject", "reason": "x", "vault": "feed"}, "unexpected")):  # fmt: skip
            r = await api.http.post("/api/review/bulk", json=body, headers=AUTH)
            assert r.status_code == 400 and word in r.json()["error"], (body, r.text)
        assert await api.outbox(d) == []
        assert await api.rt.pool.fetchval("SELECT status FROM content WHERE id=$1", d) == "in_review"


async def test_status_counts(settings):
    async with serving(settings) as api:
        a, _b, _c = await api.seed(), await api.seed(), await api.seed("nina")
        await api.http.post(f"/api/content/{a}/approve", json={"vault": "feed"}, headers=AUTH)
        r = await api.http.get("/api/status", headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["counts"] == [
            {"creator": "elena", "status": "in_review", "count": 1},
            {"creator": "elena", "status": "approved", "count": 1},
            {"creator": "nina", "status": "in_review", "count": 1},
        ]
        assert body["stages"]["in_review"] == 2 and body["stages"]["approved"] == 1 and body["stages"]["uploaded"] == 0


async def test_openapi_document(settings):
    async with serving(settings) as api:
        assert (await api.http.get("/openapi.json")).status_code == 401
        r = await api.http.get("/openapi.json", headers=AUTH)
        assert r.status_code == 200
        doc = json.loads(r.text)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {
        "/api/content", "/api/content/{id}", "/api/content/{id}/image", "/api/content/{id}/approve",
        "/api/content/{id}/reject", "/api/content/{id}/tags", "/api/content/{id}/recrop", "/api/review/bulk",
        "/api/status", "/openapi.json",
    }  # fmt: skip
    assert "get" in doc["paths"]["/api/content"] and "post" in doc["paths"]["/api/review/bulk"]
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    schemas = doc["components"]["schemas"]
    assert refs and all(ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas for ref in refs)
    approve = schemas["ApproveBody"]
    assert approve["required"] == ["vault"]
    assert {"type": "string", "maxLength": 2000} in approve["properties"]["description"]["anyOf"]
    assert set(schemas["ItemOut"]["properties"]) >= {"id", "badges", "images", "comfy", "price_cents"}


# --------------------------------------------------------------------------- the outbox under a crash


async def test_decision_is_published_once_even_if_the_relay_dies_between_publish_and_mark(settings):
    async with serving(settings, relay=False) as api:
        cid = await api.seed()
        r = await api.http.post(f"/api/content/{cid}/reject", json={"reason": "blurry"}, headers=AUTH)
        assert r.status_code == 200
        broker = make_broker(settings.nats_url)
        await broker.connect()
        try:
            relay = OutboxRelay(api.rt.pool, JetStreamPublisher(broker))
            with relay_dies_before_marking(relay):
                with pytest.raises(ConnectionResetError):
                    await relay.publish_pending()
                assert not await all_published(api.rt.pool)  # still pending: it will go again
            assert await relay.publish_pending() == 1
            assert await relay.publish_pending() == 0
        finally:
            await broker.stop()
        assert await stream_types(api.rt.ports.js, cid) == ["image.generated", "image.cropped", "image.rejected"]
