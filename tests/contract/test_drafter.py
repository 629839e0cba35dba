"""The Drafter port: the Ollama adapter against the test Ollama over real HTTP (stream true and
false), the same cases against tests.fakes.FakeDrafter, and one opt-in case against a real
Ollama (VAULTLINE_TEST_OLLAMA_HOST)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from tests.fakes import FakeDrafter
from tests.ollama_server import Fault
from vaultline.adapters.ollama import OllamaDrafter
from vaultline.adapters.retry_policies import RetryPolicy
from vaultline.domain.chat import ModelAnswer, ModelAnswerInvalid, ModelUnavailable, answer_schema

FAST = RetryPolicy("test", max_attempts=3, backoff_base=0.01, backoff_cap=0.05)
MODEL = "llama3.2"
MESSAGES = [{"role": "system", "content": "you are elena"}, {"role": "user", "content": "hi there"}]
GOOD = {"drafts": ["hey you!", "hi \U0001f495"], "offer": {"content_id": str(uuid.UUID(int=7)), "price_cents": 999}}


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(params=["ollama-stream", "ollama-nostream", "fake"])
async def harness(request, ollama_server):
    """(drafter, script) where script(scenario) prepares the next answer for either side."""
    if request.param == "fake":
        fake = FakeDrafter()

        def script(scenario: str) -> None:
            fake.script.append({
                "good": ModelAnswer.model_validate(GOOD),
                "malformed_twice": ModelAnswerInvalid("the model's answer was not valid twice"),
                "down": ModelUnavailable("Ollama unreachable"),
            }[scenario])  # fmt: skip

        yield fake, script
        return
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, stream=request.param == "ollama-stream", policy=FAST)

    def script(scenario: str) -> None:
        if scenario == "good":
            ollama_server.script(GOOD)
        elif scenario == "malformed_twice":
            ollama_server.script("not json", '{"drafts": []}')
        elif scenario == "down":
            ollama_server.script(Fault("503"), Fault("503"), Fault("503"))

    yield drafter, script
    await drafter.close()


async def test_well_formed_answer(harness):
    drafter, script = harness
    script("good")
    answer = await drafter.draft(MODEL, MESSAGES)
    assert answer == ModelAnswer.model_validate(GOOD)


async def test_malformed_twice_is_invalid(harness):
    drafter, script = harness
    script("malformed_twice")
    with pytest.raises(ModelAnswerInvalid):
        await drafter.draft(MODEL, MESSAGES)


async def test_unavailable_is_transient(harness):
    drafter, script = harness
    script("down")
    with pytest.raises(ModelUnavailable):
        await drafter.draft(MODEL, MESSAGES)


# --------------------------------------------------------------------------- the real adapter only


@pytest.mark.parametrize("stream", [True, False])
async def test_request_carries_model_messages_and_schema(ollama_server, stream):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, stream=stream, policy=FAST)
    try:
        ollama_server.script(GOOD)
        await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()
    [req] = ollama_server.chats
    assert req["model"] == MODEL
    assert req["stream"] is stream
    assert req["messages"] == MESSAGES
    assert req["format"] == answer_schema()


@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_once_is_asked_again_with_the_error(ollama_server, stream):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, stream=stream, policy=FAST)
    try:
        ollama_server.script({"drafts": ["a", "b", "c", "d"]}, GOOD)  # 4 drafts: schema says at most 3
        answer = await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()
    assert answer.drafts == ["hey you!", "hi \U0001f495"]
    first, second = ollama_server.chats
    assert second["messages"][: len(MESSAGES)] == MESSAGES
    assert second["messages"][-2]["role"] == "assistant"
    assert "not valid JSON" in second["messages"][-1]["content"]


async def test_extra_fields_and_empty_drafts_are_malformed(ollama_server):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, policy=FAST)
    try:
        ollama_server.script({"drafts": ["x"], "send_now": True}, {"drafts": [" "]})
        with pytest.raises(ModelAnswerInvalid, match="drafts"):
            await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()
    assert ollama_server.counts["/api/chat"] == 2  # retried once, not more


@pytest.mark.parametrize("stream", [True, False])
async def test_server_errors_are_retried_then_succeed(ollama_server, stream):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, stream=stream, policy=FAST)
    try:
        ollama_server.script(Fault("500"), Fault("503"), GOOD)
        answer = await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()
    assert answer.offer is not None and answer.offer.price_cents == 999
    assert ollama_server.counts["/api/chat"] == 3


async def test_slow_model_times_out_as_unavailable(ollama_server):
    drafter = OllamaDrafter(ollama_server.host, timeout=0.3, policy=RetryPolicy("one", max_attempts=1, backoff_base=0.01, backoff_cap=0.01))
    try:
        ollama_server.script(Fault("slow", delay=5.0))
        with pytest.raises(ModelUnavailable, match="slow|timeout|Timeout"):
            await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()


async def test_dropped_connection_is_unavailable(ollama_server):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, stream=False, policy=RetryPolicy("one", max_attempts=1, backoff_base=0.01, backoff_cap=0.01))
    try:
        ollama_server.script(Fault("drop"))
        with pytest.raises(ModelUnavailable):
            await drafter.draft(MODEL, MESSAGES)
    finally:
        await drafter.close()


@pytest.mark.parametrize("stream", [True, False])
async def test_nothing_listening_is_unavailable(stream):
    drafter = OllamaDrafter(f"http://127.0.0.1:{_closed_port()}", timeout=2.0, stream=stream, policy=FAST)
    try:
        with pytest.raises(ModelUnavailable, match="unreachable"):
            await drafter.draft(MODEL, MESSAGES)
        with pytest.raises(ModelUnavailable):
            await drafter.models()
    finally:
        await drafter.close()


async def test_unknown_model_says_how_to_pull_it(ollama_server):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, policy=FAST)
    try:
        with pytest.raises(ModelUnavailable, match="ollama pull nope"):
            await drafter.draft("nope", MESSAGES)
    finally:
        await drafter.close()


async def test_models_lists_the_tags(ollama_server):
    drafter = OllamaDrafter(ollama_server.host, timeout=5.0, policy=FAST)
    try:
        assert await drafter.models() == ollama_server.models
    finally:
        await drafter.close()
    assert ollama_server.counts["/api/tags"] == 1


async def test_version_endpoint(ollama_server):
    import httpx

    async with httpx.AsyncClient() as c:
        r = await c.get(f"{ollama_server.host}/api/version")
    assert r.json()["version"]


# --------------------------------------------------------------------------- opt-in: a real model


@pytest.mark.skipif(not os.environ.get("VAULTLINE_TEST_OLLAMA_HOST"), reason="set VAULTLINE_TEST_OLLAMA_HOST to run")
async def test_real_ollama_drafts_valid_json():
    from vaultline.domain.chat import ChatLine, FanProfile, Persona, build_messages

    host = os.environ["VAULTLINE_TEST_OLLAMA_HOST"]
    model = os.environ.get("VAULTLINE_TEST_OLLAMA_MODEL") or os.environ.get("VAULTLINE_OLLAMA_MODEL") or "llama3.2"
    drafter = OllamaDrafter(host, timeout=300.0)
    try:
        messages = build_messages(
            Persona(name="Elena"), creator="elena",
            history=[ChatLine("in", "hey, how was your weekend?")], profile=FanProfile("fan1"), offer=None,
        )  # fmt: skip
        answer = await drafter.draft(model, messages)
    finally:
        await drafter.close()
    assert 1 <= len(answer.drafts) <= 3
    assert answer.offer is None or isinstance(answer.offer.content_id, uuid.UUID)
