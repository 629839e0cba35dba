"""The inbox page in headless Chromium against `vaultline run` (subprocess) and the test Ollama:
open the inbox, edit a draft, send it, and check the local platform got exactly that text and
the offer, once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.e2e.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_chat_cli import chat_stack, platform_got
from tests.e2e.test_run import cli, clean_env
from tests.images import noise_image, png_bytes
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no browser: Debian's chromium is not at /usr/bin/chromium"),
]

EDITED = "made just for you \U0001f495 want it?"


async def eligible_content(database_url: str, library, cid: uuid.UUID) -> None:
    """Uploaded PPV content with a crop in the library (as the upload handler leaves it)."""
    key = f"elena/5_uploaded/ppv/{cid}.png"
    path = library / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(noise_image(3)))
    db = await asyncpg.connect(database_url)
    try:
        await db.execute(
            """INSERT INTO content (id, creator, status, vault, price_cents, phash, fanvue_media_uuid, uploaded_at,
                                    category, sha256, cropped_key, original_filename)
               VALUES ($1, 'elena', 'uploaded', 'ppv', 1299, '00ff00ff00ff00ff', 'media-42', now(), 'lingerie',
                       $2, $3, 'red-set.png')""",
            cid, "a" * 64, key,
        )  # fmt: skip
    finally:
        await db.close()


@pytest.mark.timeout(300)
async def test_inbox_edit_a_draft_and_send_it_in_chromium(tmp_path, pg_data_dir, ollama_server):
    from playwright.async_api import async_playwright, expect

    cid = uuid.uuid4()
    ollama_server.responder = lambda body: {
        "drafts": ["hey you!", "I have something new, want a peek?"],
        "offer": {"content_id": str(cid), "price_cents": 1299},
    }
    env = clean_env() | {"VAULTLINE_ADMIN_PORT": "0", "VAULTLINE_OLLAMA_HOST": ollama_server.host,
                         "VAULTLINE_OLLAMA_MODEL": "llama3.2", "VAULTLINE_DEFAULT_CREATOR": "elena"}  # fmt: skip
    data_dir, log = pg_data_dir / "data", tmp_path / "run.log"
    async with chat_stack(env, data_dir, log) as stack:
        rt, token = stack.rt, stack.token
        base = rt["admin_url"]
        await eligible_content(rt["database_url"], data_dir / "library", cid)
        r = await asyncio.to_thread(cli, "chat", "simulate", "fan1", "--text", "anything new?",
                                    "--data-dir", str(data_dir), env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr

        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            async def ready():
                r = await http.get("/api/inbox/fan1")
                return r.status_code == 200 and r.json()["status"] == "ready" and r.json()

            detail = await wait_until(ready, timeout=60, what="drafts for fan1")
            assert detail["offer"]["content_id"] == str(cid) and detail["offer"]["price_cents"] == 1299

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    context = await browser.new_context(viewport={"width": 1280, "height": 900})
                    context.set_default_timeout(20_000)
                    page = await context.new_page()
                    problems: list[str] = []
                    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

                    await page.goto(f"{base}/inbox")
                    await expect(page).to_have_url(f"{base}/login")
                    await page.fill("#token", token)
                    await page.click("button[type=submit]")
                    await page.goto(f"{base}/inbox")
                    await expect(page.locator("#summary")).to_have_text("1 unanswered · 1 conversation(s)")
                    await page.click('#conversations button[data-fan="fan1"]')
                    await expect(page.locator("#drafts button")).to_have_count(2)
                    await expect(page.locator("#history li.in")).to_contain_text("anything new?")
                    await expect(page.locator("#offer-price")).to_have_text("$12.99")
                    await page.wait_for_function(
                        "() => { const i = document.getElementById('offer-thumb'); return i.complete && i.naturalWidth > 0 }"
                    )
                    await page.click('#drafts button[data-draft="2"]')
                    await expect(page.locator("#reply")).to_have_value("I have something new, want a peek?")
                    await page.fill("#reply", EDITED)
                    await page.click("#send")
                    await expect(page.locator("#result")).to_have_text("sent (edited) with the offer at $12.99")
                    await expect(page.locator("#send")).to_be_disabled()
                    await expect(page.locator("#history li.out")).to_have_count(1)
                    assert problems == []
                finally:
                    await browser.close()

            [line] = platform_got(data_dir, "fan1")
            assert line["text"] == EDITED
            assert line["mediaUuids"] == ["media-42"] and line["price"] == 1299
            again = await http.post("/api/inbox/fan1/send", json={"draft": 1})
            assert again.status_code == 409 and "already sent" in again.json()["error"]
            assert len(platform_got(data_dir, "fan1")) == 1
            listed = (await http.get("/api/inbox")).json()
            assert listed[0]["unanswered"] is False
