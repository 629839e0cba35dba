"""The Fans page in headless Chromium against the admin app over a socket (real PostgreSQL,
nats-server, the sales handler, the local platform): fans by spend, a fan's received images
with thumbnails, price and bought-or-not, the picker, a send, and a refusal shown as such."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, chromium, needs_chromium, open_signed_in
from tests.integration.test_fans_api import AUTH, TOKEN, serving, uploaded_image
from tests.integration.test_sends import PHASH, near
from tests.waiting import wait_until
from vaultline.adapters.db import migrate
from vaultline.adapters.db.sends import PostgresSendStore
from vaultline.handlers import sends
from vaultline.settings import Settings

pytestmark = [
    pytest.mark.e2e,
    needs_chromium,
]


async def test_fans_page_in_chromium(nats_url, database_url, tmp_path):
    from playwright.async_api import expect

    await migrate(database_url)
    settings = Settings(nats_url=nats_url, database_url=database_url, data_dir=tmp_path, default_creator="elena",
                        retry_base_delay=0.1, retry_max_delay=2.0)  # fmt: skip
    async with serving(settings) as (rt, http, base):
        bought = await uploaded_image(rt, phash=PHASH, category="lingerie", colour=(220, 40, 40))
        copy = await uploaded_image(rt, phash=near(PHASH, 3), colour=(220, 60, 40))
        raced = await uploaded_image(rt, phash=near(PHASH, 40), category="lingerie", colour=(40, 40, 220))
        fresh = await uploaded_image(rt, phash=near(PHASH, 64), colour=(40, 200, 40))
        r = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(bought)], "price_cents": 1299})
        assert r.status_code == 201, r.text
        await sends.simulate_purchase(PostgresSendStore(rt.pool), r.json()["message_uuid"])
        await wait_until(lambda: rt.pool.fetchval("SELECT lifetime_spend_cents = 1299 FROM fans WHERE fan_id = 'fan-1'"),
                         what="the purchase counted by the sales handler")  # fmt: skip

        async with chromium({"width": 1280, "height": 1000}, ignore="409") as b:
            problems = b.problems
            page = await b.new_page()
            await open_signed_in(page, base, "/fans", TOKEN)
            await expect(page.locator('nav [data-nav="fans"]')).to_have_attribute("aria-current", "page")
            row = page.locator('#fan-rows tr[data-fan="fan-1"]')
            await expect(row).to_contain_text("$12.99")
            await row.locator("a").click()

            # The fan's page: what they received (thumbnail, price, bought) and what they can still get.
            received = page.locator(f'#received [data-content="{bought}"]')
            await expect(received).to_contain_text("$12.99")
            await expect(received.locator(".bought")).to_contain_text("bought")
            await wait_until(lambda: received.locator("img").evaluate("i => i.complete && i.naturalWidth > 0"),
                             what="the thumbnail to load")  # fmt: skip
            offers = page.locator("#offers .fan-card")
            await expect(offers).to_have_count(2)  # not the bought one, not its near-copy
            await expect(page.locator(f'#offers [data-content="{copy}"]')).to_have_count(0)

            # Someone else sends `raced` first: the page's send is refused, naming it.
            await page.locator(f'#offers [data-content="{raced}"] input').check()
            other = await http.post("/api/sends", headers=AUTH, json={"fan_id": "fan-1", "content_ids": [str(raced)]})
            assert other.status_code == 201
            await page.click("#send-button")
            await expect(page.locator("#send-msg")).to_contain_text("already has")
            await expect(page.locator("#send-msg")).to_contain_text(str(raced))

            await page.reload()
            await expect(page.locator("#received .fan-card")).to_have_count(2)
            await page.locator(f'#offers [data-content="{fresh}"] input').check()
            await page.fill("#send-price", "15.00")
            await page.fill("#send-text", "<b>for you</b>")
            await page.click("#send-button")
            await expect(page.locator("#send-msg")).to_contain_text("sent 1 image(s) at $15.00")
            await expect(page.locator("#received .fan-card")).to_have_count(3)
            await expect(page.locator(f'#received [data-content="{fresh}"]')).to_contain_text("not bought")
            await expect(page.locator("#offers-empty")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "fans.png"), full_page=True)
            assert problems == []
        row = await rt.pool.fetchrow("SELECT price_cents, text, status FROM sends WHERE content_id = $1", fresh)
        assert (row["price_cents"], row["text"], row["status"]) == (1500, "<b>for you</b>", "sent")
