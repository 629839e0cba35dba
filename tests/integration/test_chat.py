"""The chat handler and the inbox use cases on a real PostgreSQL (the model is FakeDrafter or
the test Ollama over HTTP; the platform is the local one, recorded in a file)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest

from tests.fakes import FakeDrafter
from vaultline.adapters.chat_sender import GuardedChatSender
from vaultline.adapters.db.chat import PostgresChatStore, SalesFanProfiles, SalesOfferSource
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.adapters.platforms import LocalPlatform
from vaultline.domain.chat import ModelAnswer, ModelAnswerInvalid, ModelOffer, ModelUnavailable, Persona
from vaultline.domain.errors import Conflict, Invalid, NotFound
from vaultline.domain.retry import TransientError
from vaultline.events import FanRef, MessageReceived, new_event, parse_event, utcnow
from vaultline.handlers import chat, inbox, sends
from vaultline.settings import CreatorConfig

CREATOR = "elena"
TEMPLATES = ["hey you, give me a minute \U0001f495", "back soon!"]


def config(slug: str) -> CreatorConfig:
    return CreatorConfig(slug=slug, persona=Persona(name="Elena"), templates=TEMPLATES)


def received(fan: str, text: str, *, message_uuid: str | None = None, event_id: uuid.UUID | None = None,
             minutes_ago: float = 0.0):  # fmt: skip
    return new_event(
        "message.received", creator=CREATOR, key=fan, event_id=event_id,
        payload=MessageReceived(platform="local", fan_id=fan, message_uuid=message_uuid or str(uuid.uuid4()),
                                text=text, fan=FanRef(display_name=f"Fan {fan}"),
                                sent_at=utcnow() - timedelta(minutes=minutes_ago)),
    )  # fmt: skip


async def local(creator: str) -> str:
    return "local"


def offers(pool) -> SalesOfferSource:
    return SalesOfferSource(pool, local)


def profiles(pool) -> SalesFanProfiles:
    return SalesFanProfiles(pool, local)


async def spent(pool, fan: str, cents: int) -> None:
    await pool.execute("INSERT INTO fans (creator, platform, fan_id, lifetime_spend_cents) VALUES ($1, 'local', $2, $3)",
                       CREATOR, fan, cents)  # fmt: skip


@pytest.fixture
def store(pool):
    return PostgresChatStore(pool)


def ports(pool, store, drafter, **kw) -> chat.ChatPorts:
    return chat.ChatPorts(store=store, drafter=drafter, offers=offers(pool), profiles=profiles(pool),
                          creator_config=config, default_model="llama3.2", **kw)  # fmt: skip


async def outbox(pool, type_: str | None = None):
    rows = await pool.fetch("SELECT body FROM outbox ORDER BY id")
    events = [parse_event(bytes(r["body"])) for r in rows]
    return [e for e in events if type_ is None or e.type == type_]


async def add_ppv(pool, *, price=1299, phash="0000000000000000", media="m-1", purchased=0) -> uuid.UUID:
    cid = uuid.uuid4()
    await pool.execute(
        """INSERT INTO content (id, creator, status, vault, price_cents, phash, fanvue_media_uuid, times_purchased,
                                uploaded_at, category, sha256)
           VALUES ($1, $2, 'uploaded', 'ppv', $3, $4, $5, $6, now(), 'lingerie', $7)""",
        cid, CREATOR, price, phash, media, purchased, uuid.uuid4().hex * 2,
    )  # fmt: skip
    return cid


# --------------------------------------------------------------------------- handler


async def test_drafts_are_stored_and_suggested(pool, store):
    drafter = FakeDrafter(ModelAnswer(drafts=["hey! \U0001f60a", "hi you"]))
    s = await chat.handle(received("fan1", "hello there"), ports=ports(pool, store, drafter))
    assert s.status == "ready" and s.drafts == ("hey! \U0001f60a", "hi you")
    [ev] = await outbox(pool, "reply.suggested")
    assert ev.payload.status == "ready" and ev.payload.drafts == ["hey! \U0001f60a", "hi you"]
    assert ev.key == "fan1" and ev.payload.fan_id == "fan1"
    row = await pool.fetchrow("SELECT * FROM messages")
    assert (row["direction"], row["text"], row["fan_name"]) == ("in", "hello there", "Fan fan1")


async def test_redelivery_gives_one_suggestion_set_and_one_model_call(pool, store):
    drafter = FakeDrafter()
    event = received("fan1", "hello")
    p = ports(pool, store, drafter)
    await asyncio.gather(*(chat.handle(event, ports=p) for _ in range(3)))
    await chat.handle(event, ports=p)
    assert await pool.fetchval("SELECT count(*) FROM suggestions") == 1
    assert len(await outbox(pool, "reply.suggested")) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE handler = 'chat'") == 1


async def test_same_platform_message_from_webhook_and_sync_is_one_set(pool, store):
    p = ports(pool, store, FakeDrafter())
    await chat.handle(received("fan1", "hi", message_uuid="pm-1"), ports=p)
    await chat.handle(received("fan1", "hi", message_uuid="pm-1"), ports=p)  # other event id
    assert await pool.fetchval("SELECT count(*) FROM suggestions") == 1
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1


async def test_flagged_message_gets_no_drafts_and_no_model_call(pool, store):
    await add_ppv(pool)
    drafter = FakeDrafter()
    s = await chat.handle(received("fan1", "im 16, can we meet up?"), ports=ports(pool, store, drafter))
    assert drafter.calls == []
    assert s.status == "flagged" and s.drafts == () and s.offer is None
    assert any("under 18" in f for f in s.flags) and any("meet in person" in f for f in s.flags)
    [ev] = await outbox(pool, "reply.suggested")
    assert ev.payload.status == "flagged" and ev.payload.offer is None and len(ev.payload.flags) == 2


async def test_outage_then_recovery(pool, store):
    event = received("fan1", "hello?")
    down = ports(pool, store, FakeDrafter(ModelUnavailable("Ollama unreachable"), ModelUnavailable("still down")))
    for attempt in (1, 2):
        with pytest.raises(TransientError):
            await chat.handle(event, ports=down)
    row = await pool.fetchrow("SELECT * FROM suggestions")
    assert row["status"] == "pending" and row["attempts"] == 2 and row["reason"] == "model unavailable: still down"
    pending = await outbox(pool, "reply.suggested")
    assert [e.payload.status for e in pending] == ["pending"]  # told once, not per attempt
    s = await chat.handle(event, ports=ports(pool, store, FakeDrafter(ModelAnswer(drafts=["sorry, here now"]))))
    assert s.status == "ready" and s.attempts == 3
    assert [e.payload.status for e in await outbox(pool, "reply.suggested")] == ["pending", "ready"]


async def test_last_delivery_of_an_outage_marks_failed(pool, store):
    p = ports(pool, store, FakeDrafter(ModelUnavailable("too slow")))
    s = await chat.handle(received("fan1", "hello?"), ports=p, final_attempt=True)
    assert s.status == "failed" and "after 1 attempts" in s.reason
    assert [e.payload.status for e in await outbox(pool, "reply.suggested")] == ["pending", "failed"]


async def test_malformed_answer_fails_with_the_reason(pool, store):
    p = ports(pool, store, FakeDrafter(ModelAnswerInvalid("the model's answer was not valid twice: drafts: too long")))
    s = await chat.handle(received("fan1", "hello?"), ports=p)
    assert s.status == "failed" and "not valid twice" in s.reason


async def test_offer_of_eligible_content_is_kept_and_ineligible_dropped(pool, store):
    cid = await add_ppv(pool)
    drafter = FakeDrafter(ModelAnswer(drafts=["peek?"], offer=ModelOffer(content_id=cid, price_cents=1299)),
                          ModelAnswer(drafts=["peek?"], offer=ModelOffer(content_id=uuid.uuid4(), price_cents=1)))  # fmt: skip
    p = ports(pool, store, drafter)
    s1 = await chat.handle(received("fan1", "show me something"), ports=p)
    assert s1.offer == ModelOffer(content_id=cid, price_cents=1299)
    assert str(cid) in drafter.calls[0][1][0]["content"]  # offered in the prompt
    s2 = await chat.handle(received("fan2", "show me something"), ports=p)
    assert s2.status == "ready" and s2.offer is None and any("not eligible" in f for f in s2.flags)


async def test_rejected_drafts_removed_all_rejected_fails(pool, store):
    drafter = FakeDrafter(ModelAnswer(drafts=["I'm a real person!", "miss you"]), ModelAnswer(drafts=["my venmo is x"]))
    p = ports(pool, store, drafter)
    s1 = await chat.handle(received("fan1", "are you real?"), ports=p)
    assert s1.drafts == ("miss you",) and any("draft 1 rejected" in f for f in s1.flags)
    s2 = await chat.handle(received("fan2", "how do I pay"), ports=p)
    assert s2.status == "failed" and "rejected by the guardrails" in s2.reason


async def test_prompt_sees_the_history_up_to_this_message(pool, store):
    drafter = FakeDrafter()
    p = ports(pool, store, drafter, history=3)
    for i in range(5):
        await chat.handle(received("fan1", f"msg {i}", minutes_ago=10 - i), ports=p)
    last = drafter.calls[-1][1]
    assert [m["content"] for m in last[1:]] == ["msg 2", "msg 3", "msg 4"]


async def test_handler_against_the_test_ollama(pool, store, ollama_server):
    from vaultline.adapters.ollama import OllamaDrafter

    cid = await add_ppv(pool)
    ollama_server.script({"drafts": ["hi from the model"], "offer": {"content_id": str(cid), "price_cents": 1299}})
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0)
    try:
        s = await chat.handle(received("fan1", "hello"), ports=ports(pool, store, drafter))
    finally:
        await drafter.close()
    assert s.status == "ready" and s.drafts == ("hi from the model",) and s.offer.content_id == cid
    assert ollama_server.chats[0]["model"] == "llama3.2"


# --------------------------------------------------------------------------- inbox


class RecordingSender:
    """Counts sends through the real GuardedChatSender to the local platform, which records
    every message it gets in `messages_dir/<fan>.jsonl` (read with `got(fan)`)."""

    def __init__(self, pool, tmp_path) -> None:
        self.platform = LocalPlatform(tmp_path / "messages")

        async def platforms(creator):
            return self.platform

        self.inner = GuardedChatSender(pool, platforms)
        self.calls: list[tuple] = []
        self.fail: Exception | None = None

    def got(self, fan: str) -> list[dict]:
        path = self.platform.messages_dir / f"{fan}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def send(self, creator, fan_id, text, *, offer, sent_by):
        self.calls.append((creator, fan_id, text, offer, sent_by))
        if self.fail:
            raise self.fail
        return await self.inner.send(creator, fan_id, text, offer=offer, sent_by=sent_by)


def inbox_ports(pool, store) -> inbox.InboxPorts:
    async def content(cid):
        row = await pool.fetchrow("SELECT * FROM content WHERE id = $1", cid)
        return dict(row) if row else None

    return inbox.InboxPorts(store=store, profiles=profiles(pool), creator_config=config, content=content)


async def test_list_unanswered_first_then_by_spend(pool, store, tmp_path):
    p = ports(pool, store, FakeDrafter())
    for fan in ("low", "high", "done"):
        await chat.handle(received(fan, "hi"), ports=p)
    for fan, cents in {"low": 100, "high": 9000, "done": 50000}.items():
        await spent(pool, fan, cents)
    ip = inbox_ports(pool, store)
    await inbox.send(ip, RecordingSender(pool, tmp_path), "done", draft=1, approved_by="t")
    rows = await inbox.list_conversations(ip)
    assert [(r["fan_id"], r["unanswered"]) for r in rows] == [("high", True), ("low", True), ("done", False)]
    assert rows[0]["spend_cents"] == 9000 and rows[0]["display_name"] == "Fan high"


async def test_show_numbers_drafts_and_the_offer(pool, store):
    cid = await add_ppv(pool)
    drafter = FakeDrafter(ModelAnswer(drafts=["a", "b"], offer=ModelOffer(content_id=cid, price_cents=1299)))
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, drafter))
    got = await inbox.show(inbox_ports(pool, store), "fan1")
    assert got["drafts"] == [{"n": 1, "text": "a"}, {"n": 2, "text": "b"}]
    assert got["offer"]["content_id"] == str(cid) and got["offer"]["price_cents"] == 1299
    assert got["offer"]["category"] == "lingerie"
    assert got["history"][-1]["text"] == "hi" and got["status"] == "ready"


async def test_show_flags_with_reasons(pool, store):
    await chat.handle(received("fan1", "let me pay you on paypal"), ports=ports(pool, store, FakeDrafter()))
    got = await inbox.show(inbox_ports(pool, store), "fan1")
    assert got["status"] == "flagged" and got["drafts"] == [] and "payment outside the platform" in got["flags"][0]


async def test_pending_shows_templates_and_one_can_be_sent(pool, store, tmp_path):
    with pytest.raises(TransientError):
        await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter(ModelUnavailable("down"))))
    ip = inbox_ports(pool, store)
    got = await inbox.show(ip, "fan1")
    assert got["status"] == "pending" and got["drafts_are_templates"]
    assert [d["text"] for d in got["drafts"]] == TEMPLATES
    sender = RecordingSender(pool, tmp_path)
    res = await inbox.send(ip, sender, "fan1", draft=2, approved_by="op")
    assert res["text"] == "back soon!" and res["template"] and res["offer"] is None
    [ev] = await outbox(pool, "message.sent")
    assert ev.payload.draft is None  # a template, not a model draft


async def test_send_edited_draft_exactly_once_with_the_offer(pool, store, tmp_path):
    cid = await add_ppv(pool, media="media-77")
    drafter = FakeDrafter(ModelAnswer(drafts=["a", "b"], offer=ModelOffer(content_id=cid, price_cents=1299)))
    await chat.handle(received("fan1", "hi", minutes_ago=3), ports=ports(pool, store, drafter))
    ip, sender = inbox_ports(pool, store), RecordingSender(pool, tmp_path)
    res = await inbox.send(ip, sender, "fan1", draft=2, edit="b, but better", approved_by="op")
    assert res["edited"] and res["text"] == "b, but better" and res["reply_seconds"] >= 180
    [call] = sender.calls
    assert call[2] == "b, but better" and call[3].content_id == cid
    [line] = sender.got("fan1")
    assert line["text"] == "b, but better" and line["mediaUuids"] == ["media-77"] and line["price"] == 1299
    [ev] = await outbox(pool, "message.sent")
    assert (ev.payload.draft, ev.payload.edited, ev.payload.approved_by) == (2, True, "op")
    assert ev.payload.offer.content_id == cid and ev.payload.message_uuid == line["uuid"]
    [media_sent] = await outbox(pool, "media.sent")  # the send guard recorded the content once
    assert media_sent.payload.content_id == cid and media_sent.payload.message_uuid == line["uuid"]
    with pytest.raises(Conflict):
        await inbox.send(ip, sender, "fan1", draft=1, approved_by="op")
    assert len(sender.calls) == 1
    shown = await inbox.show(ip, "fan1")
    assert shown["status"] == "sent" and shown["reply_seconds"]["count"] == 1
    assert str(cid) in shown["received"]  # the fan now has it: never offered again
    assert cid not in {c.content_id for c in await offers(pool).eligible(CREATOR, "fan1")}


async def test_unedited_draft_is_not_marked_edited(pool, store, tmp_path):
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter(ModelAnswer(drafts=["yo"]))))
    res = await inbox.send(inbox_ports(pool, store), RecordingSender(pool, tmp_path), "fan1", draft=1, approved_by="op")
    assert res["edited"] is False and res["draft"] == 1


async def test_guard_refusal_sends_nothing_and_keeps_the_drafts(pool, store, tmp_path):
    cid = await add_ppv(pool)
    drafter = FakeDrafter(ModelAnswer(drafts=["a"], offer=ModelOffer(content_id=cid, price_cents=1299)))
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, drafter))
    ip = inbox_ports(pool, store)
    sender = RecordingSender(pool, tmp_path)
    # Meanwhile someone sends that content to fan1 with `vaultline send`: the guard must refuse the offer.
    await sends.send(sends.SendRequest(creator=CREATOR, fan_id="fan1", content_ids=(cid,), price_cents=999),
                     store=PostgresSendStore(pool), platform=sender.platform)  # fmt: skip
    with pytest.raises(Conflict):
        await inbox.send(ip, sender, "fan1", draft=1, approved_by="op")
    assert len(sender.got("fan1")) == 1  # only the `vaultline send` message
    assert (await inbox.show(ip, "fan1"))["status"] == "ready"
    assert await outbox(pool, "message.sent") == []
    res = await inbox.send(ip, sender, "fan1", draft=1, approved_by="op", with_offer=False)
    assert res["offer"] is None and len(sender.got("fan1")) == 2


async def test_guardrails_refuse_an_edit_with_contact_details(pool, store, tmp_path):
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter()))
    sender = RecordingSender(pool, tmp_path)
    with pytest.raises(Invalid, match="contact details"):
        await inbox.send(inbox_ports(pool, store), sender, "fan1", draft=1, edit="mail me: a@b.com", approved_by="op")
    assert sender.calls == []


async def test_bad_draft_number_and_unknown_fan(pool, store, tmp_path):
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter()))
    ip, sender = inbox_ports(pool, store), RecordingSender(pool, tmp_path)
    with pytest.raises(Invalid, match="draft 4 does not exist"):
        await inbox.send(ip, sender, "fan1", draft=4, approved_by="op")
    with pytest.raises(Invalid, match="choose a draft"):
        await inbox.send(ip, sender, "fan1", draft=None, approved_by="op")
    with pytest.raises(NotFound):
        await inbox.show(ip, "nobody")
    assert sender.calls == []


async def test_platform_failure_releases_the_claim(pool, store, tmp_path):
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter()))
    ip, sender = inbox_ports(pool, store), RecordingSender(pool, tmp_path)
    sender.fail = RuntimeError("platform down")
    with pytest.raises(RuntimeError):
        await inbox.send(ip, sender, "fan1", draft=1, approved_by="op")
    assert (await inbox.show(ip, "fan1"))["status"] == "ready"
    sender.fail = None
    await inbox.send(ip, sender, "fan1", draft=1, approved_by="op")
    assert len(sender.got("fan1")) == 1


async def test_discard_records_and_sends_nothing(pool, store, tmp_path):
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter()))
    ip = inbox_ports(pool, store)
    res = await inbox.discard(ip, "fan1", by="op")
    assert res["discarded_by"] == "op"
    [ev] = await outbox(pool, "reply.discarded")
    assert ev.payload.discarded_by == "op"
    assert await outbox(pool, "message.sent") == []
    with pytest.raises(Conflict):
        await inbox.discard(ip, "fan1", by="op")
    assert (await inbox.list_conversations(ip))[0]["unanswered"] is False


async def test_answering_supersedes_older_suggestions_of_the_conversation(pool, store, tmp_path):
    p = ports(pool, store, FakeDrafter())
    await chat.handle(received("fan1", "one", minutes_ago=2), ports=p)
    await chat.handle(received("fan1", "two", minutes_ago=1), ports=p)
    await inbox.send(inbox_ports(pool, store), RecordingSender(pool, tmp_path), "fan1", draft=1, approved_by="op")
    statuses = [r["status"] for r in await pool.fetch("SELECT status FROM suggestions ORDER BY id")]
    assert statuses == ["superseded", "sent"]
    reply = await pool.fetchval("SELECT reply_seconds FROM suggestions WHERE status = 'sent'")
    assert reply >= 120  # from the oldest unanswered message


async def test_offers_exclude_what_the_fan_has_and_near_copies(pool, store, tmp_path):
    had = await add_ppv(pool, phash="f0f0f0f0f0f0f0f0", media="m-had")
    near = await add_ppv(pool, phash="f0f0f0f0f0f0f0f3")  # 2 bits from `had`
    far = await add_ppv(pool, phash="0f0f0f0f0f0f0f0f")
    await pool.execute("INSERT INTO content (id, creator, status, vault, price_cents, phash, sha256) "
                       "VALUES ($1, $2, 'approved', 'ppv', 999, '1234123412341234', $3)", uuid.uuid4(), CREATOR, "b" * 64)
    assert {c.content_id for c in await offers(pool).eligible(CREATOR, "fan1")} == {had, near, far}  # not uploaded: never
    await chat.handle(received("fan1", "hi"), ports=ports(pool, store, FakeDrafter(
        ModelAnswer(drafts=["a"], offer=ModelOffer(content_id=had, price_cents=1299))
    )))  # fmt: skip
    await inbox.send(inbox_ports(pool, store), RecordingSender(pool, tmp_path), "fan1", draft=1, approved_by="op")
    assert {c.content_id for c in await offers(pool).eligible(CREATOR, "fan1")} == {far}
    assert {c.content_id for c in await offers(pool).eligible(CREATOR, "fan2")} == {had, near, far}
    assert (await profiles(pool).profile(CREATOR, "fan1")).received == (had,)


async def test_heartbeats_while_the_model_writes(pool, store):
    class Slow(FakeDrafter):
        async def draft(self, model, messages):
            await asyncio.sleep(0.4)
            return await super().draft(model, messages)

    beats = []

    async def beat():
        beats.append(1)

    s = await chat.handle(received("fan1", "hi"), ports=ports(pool, store, Slow()), heartbeat=beat, heartbeat_every=0.05)
    assert s.status == "ready" and len(beats) >= 3
