"""The send port (handlers.sends.MessagePlatform), one set of cases for the local platform and
for Fanvue through the real client against the test Fanvue server over HTTP."""

from __future__ import annotations

import pytest

from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.errors import ValidationError
from vaultline.adapters.fanvue.tokens import StaticTokenProvider
from vaultline.adapters.platforms import FanvuePlatform, LocalPlatform
from vaultline.handlers.sends import SendOutcomeUnknown, SendRefused


@pytest.fixture(params=["local", "fanvue"])
async def platform(request, tmp_path):
    if request.param == "local":
        yield LocalPlatform(tmp_path / "messages"), (lambda n: [f"local-media-{i}" for i in range(n)])
        return
    from tests.fanvue_server import FanvueTestServer

    with FanvueTestServer() as server:
        client = FanvueClient(StaticTokenProvider(server.issue_tokens()["access_token"]), base_url=server.base_url, timeout=0.5)
        yield FanvuePlatform(client), server.add_ready_media
        await client.aclose()


async def test_a_sent_message_is_read_back_with_its_media_and_price(platform):
    p, media_for = platform
    media = media_for(2)
    assert await p.fan_messages("fan-a") == []
    first = await p.send_message("fan-a", "hello", media, 999)
    second = await p.send_message("fan-a", "free one", media[:1], None)
    assert first != second
    got = await p.fan_messages("fan-a")
    assert [m.uuid for m in got] == [second, first]  # newest first
    assert got[1].media_uuids == tuple(media) and got[1].price_cents == 999 and got[1].from_creator
    assert got[0].price_cents is None and got[1].sent_at is not None
    assert await p.fan_messages("fan-b") == []


async def test_fanvue_refusals_carry_fanvues_message_and_timeouts_are_ambiguous(fanvue_server):
    server = fanvue_server
    client = FanvueClient(StaticTokenProvider(server.issue_tokens()["access_token"]), base_url=server.base_url, timeout=0.5)
    p = FanvuePlatform(client)
    [media] = server.add_ready_media()
    try:
        with pytest.raises(SendRefused, match="at least 300"):
            await p.send_message("fan-a", "cheap", [media], 299)
        with pytest.raises(SendRefused, match="not ready"):
            await p.send_message("fan-a", None, ["no-such-media"], None)
        server.hang_after_commit("chats.send", delay=2.0)
        with pytest.raises(SendOutcomeUnknown):
            await p.send_message("fan-a", "slow", [media], 999)
        assert len(server.sent_messages("fan-a")) == 1  # it did go out
        assert server.count("chats.send") == 3  # never repeated by the client
    finally:
        await client.aclose()


async def test_client_sends_integer_cents_and_reads_pages(fanvue_server):
    server = fanvue_server
    async with FanvueClient(StaticTokenProvider(server.issue_tokens()["access_token"]), base_url=server.base_url) as fv:
        [media] = server.add_ready_media()
        uuids = [await fv.send_chat_message("fan-a", f"m{i}", [media], 300 + i) for i in range(3)]
        page1, more = await fv.chat_messages("fan-a", size=2)
        page2, more2 = await fv.chat_messages("fan-a", page=2, size=2)
        assert [m["uuid"] for m in page1 + page2] == uuids[::-1] and more and not more2
        assert page1[0]["pricing"] == {"USD": {"price": 302}}
        server.purchase(uuids[0])
        assert (await fv.chat_messages("fan-a"))[0][-1]["purchasedAt"]
        assert await fv.chat_messages("nobody") == ([], False)
        with pytest.raises(ValueError):
            await fv.send_chat_message("fan-a", "x", [], 999)  # a price needs media
        with pytest.raises(ValidationError):
            await fv.send_chat_message("fan-a", "", [], None)
    body = [r for r in server.requests if r.route == "chats.send"]
    assert body and all(r.headers.get("x-fanvue-api-version") for r in body)
