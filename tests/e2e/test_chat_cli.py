"""`vaultline chat simulate` and `vaultline inbox ...` as an operator types them, against a
stack started with `vaultline run` in another process and the test Ollama over HTTP."""

from __future__ import annotations

import json

import pytest

import asyncio
import contextlib
import signal
import subprocess
from pathlib import Path

from tests.e2e.test_run import RunningStack, cli, clean_env, leftovers, start, wait_runtime
from tests.waiting import wait_until
from vaultline.adapters.bus.stream import connect, read_events

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def chat_stack(env: dict[str, str], data_dir: Path, log: Path):
    """`vaultline run` with `env` (the test Ollama, a config); stopped with SIGTERM, no server left."""
    proc = start(data_dir, env, log)
    try:
        rt = await wait_runtime(proc, data_dir, log)
        token = (data_dir / "admin-token").read_text().strip()
        yield RunningStack(rt, data_dir, token, env)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert leftovers(data_dir) == []


def platform_got(data_dir: Path, fan: str, creator: str = "elena") -> list[dict]:
    """What the local platform received for `fan` (one JSON line per message)."""
    path = data_dir / "local-platform" / creator / "messages" / f"{fan}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def show(fan: str, stack) -> dict:
    r = cli("inbox", "show", fan, "--json", "--data-dir", str(stack.data_dir), env=stack.env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.timeout(300)
async def test_simulate_pending_templates_ready_send_and_discard(tmp_path, pg_data_dir, ollama_server):
    config = tmp_path / "vaultline.toml"
    config.write_text(
        'default_creator = "elena"\n[creators.elena]\ntemplates = ["give me a sec babe", "back soon"]\n'
        '[creators.elena.persona]\nname = "Elena"\n'
    )
    env = clean_env() | {
        "VAULTLINE_ADMIN_PORT": "0", "VAULTLINE_OLLAMA_HOST": ollama_server.host, "VAULTLINE_OLLAMA_MODEL": "llama3.2",
        "VAULTLINE_CONFIG_FILE": str(config), "VAULTLINE_RETRY_MAX_DELAY": "2",
    }  # fmt: skip
    ollama_server.down = 503  # Ollama is down until the test has seen the pending suggestion
    # Not under pytest's tmp_path: a concurrent pytest run re-chmods it, locking PostgreSQL out.
    data_dir, log = pg_data_dir / "data", tmp_path / "run.log"
    async with chat_stack(env, data_dir, log) as stack:
        d = str(stack.data_dir)
        r = cli("chat", "simulate", "fan1", "--text", "hey, you up?", "--data-dir", d, env=env)
        assert r.returncode == 0, r.stderr

        def told_pending():  # pending after a failed attempt (before it, the model is being asked)
            c = show("fan1", stack)
            return c["status"] == "pending" and c["reason"] and c

        pending = await wait_until(told_pending, timeout=60, what="a pending suggestion with its reason")
        assert pending["drafts_are_templates"]
        assert [x["text"] for x in pending["drafts"]] == ["give me a sec babe", "back soon"]
        assert "503" in pending["reason"]
        ollama_server.down = None

        ready = await wait_until(lambda: (c := show("fan1", stack))["status"] == "ready" and c, timeout=60,
                                 what="the model to come back")  # fmt: skip
        assert ready["drafts"] == [{"n": 1, "text": "thanks for writing: hey, you up?"}]
        listed = json.loads(cli("inbox", "list", "--json", "--data-dir", d, env=env).stdout)
        assert [(c["fan_id"], c["unanswered"]) for c in listed] == [("fan1", True)]

        sent = cli("inbox", "send", "fan1", "--draft", "1", "--edit", "hey you \U0001f495 yes!", "--json",
                   "--data-dir", d, env=env)  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        res = json.loads(sent.stdout)
        assert res["edited"] is True and res["platform"] == "local"
        [line] = platform_got(stack.data_dir, "fan1")
        assert line["text"] == "hey you \U0001f495 yes!" and line["uuid"] == res["message_uuid"]
        again = cli("inbox", "send", "fan1", "--draft", "1", "--data-dir", d, env=env)
        assert again.returncode == 1 and "already sent" in again.stderr
        assert len(platform_got(stack.data_dir, "fan1")) == 1

        cli("chat", "simulate", "fan2", "--text", "can we meet up irl?", "--data-dir", d, env=env)
        flagged = await wait_until(lambda: (c := show("fan2", stack))["status"] == "flagged" and c, timeout=60)
        assert flagged["drafts"] == [] and "meet in person" in flagged["flags"][0]
        human = cli("inbox", "show", "fan2", "--data-dir", d, env=env)
        assert "flag:" in human.stdout and "meet in person" in human.stdout
        gone = cli("inbox", "discard", "fan2", "--data-dir", d, env=env)
        assert gone.returncode == 0, gone.stderr
        assert cli("inbox", "show", "nobody", "--data-dir", d, env=env).returncode == 1
        assert cli("inbox", "send", "fan1", "--data-dir", d, env=env).returncode == 2

        nc, js = await connect(stack.rt["nats_url"])
        try:
            async def types():
                return [se.event.type async for se in read_events(js, subject="*.*.elena.>")]

            await wait_until(lambda: _has(types, "reply.discarded"), timeout=30, what="the relay")
            got = await types()
        finally:
            await nc.close()
        assert got.count("message.sent") == 1 and got.count("message.received") == 2
        assert got.count("reply.discarded") == 1


async def _has(types, t: str) -> bool:
    return t in await types()
