"""The inbox API over HTTP (FastAPI app on a socket, real NATS + PostgreSQL): errors a person
can cause, the generated OpenAPI, and that sending needs the token."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakeDrafter
from tests.integration.test_chat import config, offers, profiles, received
from tests.integration.test_review_api import AUTH, serving
from vaultline.adapters.db.chat import PostgresChatStore
from vaultline.domain.chat import ModelAnswer
from vaultline.handlers import chat

pytestmark = pytest.mark.integration


async def test_inbox_api(settings):
    async with serving(settings) as api:
        pool = api.rt.pool
        ports = chat.ChatPorts(store=PostgresChatStore(pool), drafter=FakeDrafter(ModelAnswer(drafts=["one", "two"])),
                               offers=offers(pool), profiles=profiles(pool),
                               creator_config=config, default_model="m")  # fmt: skip
        await chat.handle(received("fan1", "hi"), ports=ports)
        http = api.http

        assert (await http.get("/api/inbox")).status_code == 401
        assert (await http.post("/api/inbox/fan1/send", json={"draft": 1})).status_code == 401
        listed = (await http.get("/api/inbox", headers=AUTH)).json()
        assert [(c["fan_id"], c["unanswered"], c["status"]) for c in listed] == [("fan1", True, "ready")]
        detail = (await http.get("/api/inbox/fan1", headers=AUTH)).json()
        assert detail["drafts"] == [{"n": 1, "text": "one"}, {"n": 2, "text": "two"}] and detail["offer"] is None

        r = await http.get("/api/inbox/nobody", headers=AUTH)
        assert r.status_code == 404 and "no conversation" in r.json()["error"]
        r = await http.post("/api/inbox/fan1/send", json={"draft": 9}, headers=AUTH)
        assert r.status_code == 400 and "draft 9 does not exist" in r.json()["error"]
        r = await http.post("/api/inbox/fan1/send", json={"draft": 1, "mood": "x"}, headers=AUTH)
        assert r.status_code == 400 and "mood" in r.json()["error"]
        r = await http.post("/api/inbox/fan1/send", json={"text": "dm me on insta @me.real"}, headers=AUTH)
        assert r.status_code == 400 and "guardrails" in r.json()["error"]

        r = await http.post("/api/inbox/fan1/send", json={"draft": 2}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "two" and r.json()["edited"] is False and r.json()["approved_by"] == "admin"
        assert r.json()["platform"] == "local"  # no Fanvue tokens: the local platform recorded it
        path = settings.data_dir / "local-platform" / "elena" / "messages" / "fan1.jsonl"
        [line] = [json.loads(x) for x in path.read_text().splitlines()]
        assert line["text"] == "two" and line["uuid"] == r.json()["message_uuid"]
        r = await http.post("/api/inbox/fan1/send", json={"draft": 1}, headers=AUTH)
        assert r.status_code == 409
        r = await http.post("/api/inbox/fan1/discard", headers=AUTH)
        assert r.status_code == 409

        doc = (await http.get("/openapi.json", headers=AUTH)).json()
        assert {"/api/inbox", "/api/inbox/{fan_id}", "/api/inbox/{fan_id}/send", "/api/inbox/{fan_id}/discard"} <= set(
            doc["paths"]
        )
        assert "ReplyIn" in doc["components"]["schemas"]
        page = await http.get("/inbox", headers=AUTH | {"Accept": "text/html"})
        assert page.status_code == 200 and "inbox.js" in page.text
