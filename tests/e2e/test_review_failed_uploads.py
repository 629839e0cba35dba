"""The "Failed uploads" view of the review page in chromium against `vaultline run`: the
platform's reason on the card, a retry with the keyboard (U) that sends the image back to the
upload queue, and a retry that lost a race showing its 409 on the card."""

from __future__ import annotations

import uuid

import asyncpg

from tests.e2e import test_review_browser as browser_test
from tests.browser import ARTIFACTS, chromium, sign_in
from tests.e2e.test_review_browser import history_types
from tests.e2e.test_run import running_stack
from tests.images import Placement, face_png
from tests.waiting import wait_until

pytestmark = browser_test.pytestmark

SCOPE = "Fanvue refused (403): missing scope write:vault"
MARKUP = '<img src=x onerror="alert(1)"> Fanvue refused (422): bad <b>caption</b>'


async def test_failed_uploads_view_in_chromium(tmp_path):
    from playwright.async_api import expect

    async with running_stack(tmp_path) as stack:
        data_dir, env, token = stack.data_dir, stack.env, stack.token
        base = stack.rt["admin_url"]

        async with stack.admin(timeout=60) as http:
            # ---------------------------------------------------------------- two faces in review
            ids = []
            for name, png, mode in (
                ("astronaut.png", face_png([Placement("astronaut")]), "no_face"),
                ("hopper.png", face_png([Placement("grace_hopper", width=700)]), "chin"),
            ):
                r = await http.post(
                    "/api/ingest", files={"file": (name, png, "image/png")}, data={"creator": "elena", "mode": mode}
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["content_id"])
            retried, raced = ids  # retried in the browser with U; raced: retried over the API first

            async def both_in_review():
                r = await http.get("/api/content", params={"status": "in_review"})
                assert r.status_code == 200, r.text
                return {i["id"] for i in r.json()["items"]} == set(ids)

            await wait_until(both_in_review, timeout=180, interval=0.25, what="2 items in review")

            # ---------------------------------------------------------------- make them failed uploads
            # Written straight into the content row, the way the upload handler records a refusal
            # (status, error, vault): making a real upload fail through the running stack would need a
            # platform that refuses, and that failure path (platform error -> media.upload_failed ->
            # upload_failed row) is covered by tests/integration/test_upload.py. This test is about
            # the page and the retry route.
            db = await asyncpg.connect(stack.rt["database_url"])
            try:
                for cid, error, vault, price in ((retried, SCOPE, "feed", None), (raced, MARKUP, "ppv", 1250)):
                    done = await db.execute(
                        "UPDATE content SET status='upload_failed', error=$2, vault=$3, price_cents=$4 WHERE id=$1",
                        uuid.UUID(cid), error, vault, price,
                    )  # fmt: skip
                    assert done == "UPDATE 1", done
            finally:
                await db.close()
            r = await http.get("/api/content", params={"status": "upload_failed"})
            assert {i["id"]: i["error"] for i in r.json()["items"]} == {retried: SCOPE, raced: MARKUP}

            # ---------------------------------------------------------------- the browser
            async with chromium({"width": 1360, "height": 900}) as b:
                dialogs, problems = b.dialogs, b.problems
                page = await b.new_page()
                await sign_in(page, base, token)
                # The review view is the default; the switch counts the failed uploads.
                switch_review, switch_failed = page.locator("#view-review"), page.locator("#view-failed")
                await expect(switch_review).to_have_attribute("aria-pressed", "true")
                await expect(page.locator("#empty")).to_have_text("Nothing waiting for review.")
                await expect(page.locator("#failed-count")).to_have_text("2")
                await expect(switch_failed).to_have_attribute("aria-label", "Failed uploads (2)")

                await switch_failed.click()
                await expect(switch_failed).to_have_attribute("aria-pressed", "true")
                await expect(switch_review).to_have_attribute("aria-pressed", "false")
                # The URL follows the view, in the shared navigation's form (a reload keeps it).
                await expect(page).to_have_url(f"{base}/review?view=failed")
                await expect(page.locator('.site-nav [data-nav="failed"]')).to_have_attribute("aria-current", "page")
                await expect(page.locator('.site-nav [data-nav="review"]')).not_to_have_attribute("aria-current", "page")
                await expect(page.locator("#bulk")).to_be_hidden()
                cards = page.locator("#grid .card")
                await expect(cards).to_have_count(2)

                def card(cid: str):
                    return page.locator(f'#grid .card[data-id="{cid}"]')

                one, two = card(retried), card(raced)
                await expect(one.locator(".name")).to_have_text("astronaut.png")
                await expect(one.locator(".fail-reason")).to_have_text(SCOPE)
                await expect(one.locator(".dest-vault")).to_have_text("feed")
                await expect(one.locator(".dest-price")).to_have_text("no price")
                await expect(two.locator(".fail-reason")).to_have_text(MARKUP)  # text, not markup
                await expect(two.locator(".dest-vault")).to_have_text("ppv")
                await expect(two.locator(".dest-price")).to_have_text("$12.50")
                assert await page.locator("#grid .fail-reason *").count() == 0
                color = await one.locator(".fail-reason").evaluate("e => getComputedStyle(e).color")
                assert color == "rgb(180, 35, 24)", color  # --bad: the reason is red
                # No decision controls on a failed upload.
                for control in (".approve", ".open-reject", ".vault", ".price", ".tags", ".recrop", ".pick"):
                    await expect(cards.locator(control)).to_have_count(0)
                await expect(cards.locator("button.retry")).to_have_count(2)
                # The shared navigation's "Failed uploads" link (/review?view=failed) opens this view
                # with its first card focused; the old #failed-uploads address still works.
                await page.goto(f"{base}/review")
                await expect(switch_review).to_have_attribute("aria-pressed", "true")
                await page.click('.site-nav [data-nav="failed"]')
                await expect(page).to_have_url(f"{base}/review?view=failed")
                await expect(switch_failed).to_have_attribute("aria-pressed", "true")
                await expect(cards).to_have_count(2)
                await expect(cards.first).to_be_focused()
                await page.goto(f"{base}/review#failed-uploads")
                await expect(page).to_have_url(f"{base}/review?view=failed")
                await expect(switch_failed).to_have_attribute("aria-pressed", "true")
                await expect(cards).to_have_count(2)
                await page.wait_for_function(
                    "() => { const imgs = document.querySelectorAll('#grid img.thumb');"
                    " return imgs.length === 2 && [...imgs].every(i => i.complete && i.naturalWidth > 0) }"
                )
                await one.focus()
                await page.screenshot(path=str(ARTIFACTS / "failed-uploads.png"), full_page=True)

                # ------------------------------------------------ a retry that lost the race: 409 on the card
                r = await http.post(f"/api/content/{raced}/retry-upload")
                assert r.status_code == 200 and r.json()["status"] == "approved", r.text
                await two.locator("button.retry").click()
                await expect(two.locator(".error")).to_contain_text("409")
                await expect(two.locator(".error")).to_contain_text("only a failed upload can be retried")
                await expect(two.locator(".badge-status")).to_have_text("now approved")
                await expect(two.locator("button.retry")).to_be_disabled()

                # ------------------------------------------------ U on the focused card retries it
                await one.focus()
                await page.keyboard.press("a")  # decision keys do nothing on a failed upload
                await page.keyboard.press("r")
                await expect(one.locator(".error")).to_be_hidden()
                await page.keyboard.press("u")
                await expect(one).to_have_count(0)
                await expect(page.locator("#notice")).to_contain_text("Upload retry requested for astronaut.png")
                await expect(page.locator("#failed-count")).to_be_hidden()  # nothing failed any more
                await expect(cards).to_have_count(1)  # the stale one stays, locked, until a refresh

                await page.click("#refresh")
                await expect(cards).to_have_count(0)
                await expect(page.locator("#empty")).to_have_text("No failed uploads.")
                await expect(page.locator("#empty")).to_be_visible()

                # Back to the review view: bulk bar again, and nothing left in review.
                await switch_review.click()
                await expect(page).to_have_url(f"{base}/review")
                await expect(page.locator('.site-nav [data-nav="review"]')).to_have_attribute("aria-current", "page")
                await expect(page.locator("#bulk")).to_be_visible()
                await expect(page.locator("#empty")).to_have_text("Nothing waiting for review.")

                assert dialogs == [], f"a dialog fired: {dialogs}"
                problems = [p for p in problems if "409" not in p]  # the raced retry's conflict
                assert problems == [], problems

            # ---------------------------------------------------------------- what the API says
            async def status_of(cid: str) -> str:
                r = await http.get(f"/api/content/{cid}")
                assert r.status_code == 200, r.text
                return r.json()["status"]

            # approved by the retry; the stack's local platform may already have uploaded it
            for cid in ids:
                status = await wait_until(lambda cid=cid: status_of(cid), what=f"status of {cid}")
                assert status in ("approved", "uploaded"), (cid, status)

        # ---------------------------------------------------------------- the audit trail
        async def retry_events(cid: str) -> list[str] | None:
            types = await history_types(data_dir, env, cid)
            return types if "media.upload_retry_requested" in types else None

        for cid in ids:
            types = await wait_until(
                lambda cid=cid: retry_events(cid), timeout=60, interval=0.5, what=f"the retry of {cid} in the stream"
            )
            assert types.count("media.upload_retry_requested") == 1, types

