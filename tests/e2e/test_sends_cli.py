"""The sends/fans/sales CLI as an operator types it, on the local platform and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.test_sends import PHASH, near, outbox_events, uploaded
from vaultline.adapters.db.sales import PostgresSalesStore
from vaultline.handlers import sales


@pytest.fixture
def cli(migrated_db, tmp_path):
    env = {**os.environ, "VAULTLINE_DATABASE_URL": migrated_db, "VAULTLINE_DATA_DIR": str(tmp_path),
           "VAULTLINE_DEFAULT_CREATOR": "elena"}  # fmt: skip
    env.pop("VAULTLINE_NATS_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vaultline", *args], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)  # fmt: skip

    return run


async def test_send_refuse_force_purchase_and_read_back(cli, pool, tmp_path):
    a = await uploaded(pool, phash=PHASH, category="lingerie")
    copy = await uploaded(pool, phash=near(PHASH, 3))
    other = await uploaded(pool, category="beach")

    sent = cli("send", str(a), "--to", "fan-1", "--price", "1299", "--text", "hi", "--json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)["message_uuid"]
    assert (tmp_path / "local-platform" / "elena" / "messages" / "fan-1.jsonl").read_text().count(message) == 1

    again = cli("send", str(a), "--to", "fan-1")
    assert again.returncode == 3 and str(a) in again.stderr and "already has" in again.stderr
    near_copy = cli("send", str(copy), "--to", "fan-1")
    assert near_copy.returncode == 3 and "near-copy" in near_copy.stderr
    assert cli("send", str(copy), "--to", "fan-1", "--force").returncode == 2  # --force needs --reason
    forced = cli("send", str(copy), "--to", "fan-1", "--force", "--reason", "she asked", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["forced"]
    assert cli("send", "not-an-id", "--to", "fan-1").returncode == 2

    suggest = json.loads(cli("suggest-ppv", "fan-1", "--json").stdout)
    assert [s["content_id"] for s in suggest["suggestions"]] == [str(other)]
    assert suggest["suggestions"][0]["price_cents"] == 999

    bought = cli("fans", "simulate-purchase", message, "--json")
    assert bought.returncode == 0, bought.stderr
    for event in await outbox_events(pool, "sale.recorded"):  # what the stack's sales worker does
        await sales.handle(event, store=PostgresSalesStore(pool))

    fans = json.loads(cli("fans", "list", "--json").stdout)
    assert [(f["fan_id"], f["lifetime_spend_cents"], f["received"]) for f in fans] == [("fan-1", 1299, 2)]
    show = json.loads(cli("fans", "show", "fan-1", "--json").stdout)
    by_content = {s["content_id"]: s for s in show["sends"]}
    assert by_content[str(a)]["purchased_at"] and by_content[str(a)]["price_cents"] == 1299
    assert by_content[str(copy)]["forced"] and by_content[str(copy)]["reason"] == "she asked"
    [sale] = json.loads(cli("sales", "list", "--json").stdout)
    assert sale["matched_content_id"] == str(a) and sale["sources"] == ["local"]
    assert json.loads(cli("sales", "list", "--unmatched", "--json").stdout) == []
    assert cli("fans", "show", "nobody").returncode == 2
    table = cli("fans", "list")
    assert "fan-1" in table.stdout and "$12.99" in table.stdout
