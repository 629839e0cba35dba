"""The review page in a real browser (Debian's chromium, driven by playwright) against
`vaultline run` in a subprocess, the way an operator uses it: ingest over HTTP, sign in through
the form, decide with the keyboard and the buttons, then check the API and the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, chromium, needs_chromium, submit_token
from tests.e2e.test_run import cli, running_stack
from tests.images import Placement, comfy_text, face_png
from tests.waiting import wait_until

SCRIPT = "<script>alert(1)</script>"

pytestmark = [pytest.mark.e2e, needs_chromium]


def prompt_chunks(seed: int, positive: str) -> dict[str, str]:
    """ComfyUI text chunks whose sampler's positive conditioning is `positive`."""
    chunks = comfy_text(seed=seed, workflow_kb=1)
    graph = json.loads(chunks["prompt"])
    graph["6"]["inputs"]["text"] = positive
    graph["3"]["inputs"]["positive"] = ["6", 0]
    chunks["prompt"] = json.dumps(graph)
    return chunks


async def history_types(data_dir: Path, env: dict[str, str], content_id: str) -> list[str]:
    """Event types of one image, oldest first, read from the stream by `vaultline history`."""
    r = await asyncio.to_thread(cli, "history", content_id, "--json", "--data-dir", str(data_dir), env=env)
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["type"] for line in r.stdout.splitlines()]


async def test_review_page_in_chromium(tmp_path):
    from playwright.async_api import expect

    async with running_stack(tmp_path) as stack:
        data_dir, env, token = stack.data_dir, stack.env, stack.token
        base = stack.rt["admin_url"]

        async with stack.admin(timeout=60) as http:
            # ---------------------------------------------------------------- three faces in
            uploads = [
                ("astronaut.png", face_png([Placement("astronaut")], text=prompt_chunks(1, "photo of elena, beach")),
                 "no_face"),
                ("hopper.png", face_png([Placement("grace_hopper", width=700)],
                                        text=prompt_chunks(2, f"{SCRIPT}, 1girl, portrait, studio light")), "chin"),
                ("camera.png", face_png([Placement("camera", width=700)]), "no_face"),
            ]  # fmt: skip
            ingested = []
            for name, png, mode in uploads:
                r = await http.post(
                    "/api/ingest",
                    files={"file": (name, png, "image/png")},
                    data={"creator": "elena", "mode": mode},
                )
                assert r.status_code == 201, r.text
                ingested.append(r.json()["content_id"])
            astronaut, hopper, camera = ingested

            async def all_in_review():
                r = await http.get("/api/content", params={"status": "in_review"})
                assert r.status_code == 200, (
                    f"GET /api/content -> {r.status_code} {r.text[:200]}: is the review API "
                    "(admin_review.review_routes) wired into bootstrap.admin_routes?"
                )
                items = r.json()["items"]
                return items if {i["id"] for i in items} == set(ingested) else None

            items = await wait_until(all_in_review, timeout=180, interval=0.25, what="3 items in review")
            by_id = {i["id"]: i for i in items}
            assert [i["id"] for i in items] == ingested[::-1], "the API lists newest first"
            assert SCRIPT in by_id[hopper]["comfy"]["positive_prompt"]

            # ---------------------------------------------------------------- the browser
            async with chromium({"width": 1360, "height": 1000}) as b:
                context, dialogs, problems = b.context, b.dialogs, b.problems
                page = await b.new_page()
                # Not signed in: the page sends the browser to the login form.
                await page.goto(f"{base}/review")
                await expect(page).to_have_url(f"{base}/login")
                await submit_token(page, "not-the-token")
                await expect(page.locator(".login-error")).to_contain_text("not right")
                problems.clear()  # the 401 of the wrong token is logged by the browser
                await submit_token(page, token)
                await expect(page).to_have_url(f"{base}/review")
                cookie = next(c for c in await context.cookies() if c["name"] == "vaultline_admin")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

                cards = page.locator("#grid .card")
                await expect(cards).to_have_count(3)
                dom_ids = [await c.get_attribute("data-id") for c in await cards.all()]
                assert dom_ids == ingested[::-1], "newest first"

                def card(cid: str):
                    return page.locator(f'#grid .card[data-id="{cid}"]')

                # The first card has the focus on load: the keys work without a click.
                await expect(card(dom_ids[0])).to_be_focused()

                # The prompt is shown as text; nothing ran.
                await expect(card(hopper).locator(".prompt")).to_contain_text(SCRIPT)
                assert await page.locator("#grid script").count() == 0
                for cid in ingested:
                    await expect(card(cid).locator(".name")).to_have_text(by_id[cid]["original_filename"])
                    await expect(card(cid).locator(".badge")).to_have_count(len(by_id[cid]["badges"]))
                await expect(page.locator('#stages [data-stage="in_review"] b')).to_have_text("3")
                await page.wait_for_function(
                    "() => { const imgs = document.querySelectorAll('#grid img.thumb');"
                    " return imgs.length === 3 && [...imgs].every(i => i.complete && i.naturalWidth > 0) }"
                )

                # The original with its cut line, at cut_y / height of the picture.
                item = by_id[camera]
                assert item["cut_y"] is not None and item["height"]
                await card(camera).locator(".toggle").click()
                orig = card(camera).locator("img.orig")
                await expect(orig).to_be_visible()
                await page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=await orig.element_handle())
                geo = await card(camera).evaluate(
                    """(c) => { const w = c.querySelector('.orig-wrap').getBoundingClientRect();
                               const i = c.querySelector('img.orig');
                               const l = c.querySelector('.cutline').getBoundingClientRect();
                               return {frac: (l.top - w.top) / w.height, natural: i.naturalHeight,
                                       imgH: i.getBoundingClientRect().height, wrapH: w.height} }"""
                )
                assert geo["natural"] == item["height"]
                assert abs(geo["imgH"] - geo["wrapH"]) < 1
                assert abs(geo["frac"] - item["cut_y"] / item["height"]) < 0.01, geo

                # A second tab, loaded now, will try to decide an item after it was decided.
                other = await b.new_page()
                await other.goto(f"{base}/review")
                await expect(other.locator("#grid .card")).to_have_count(3)

                await page.bring_to_front()
                await page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

                # ------------------------------------------------ first card: keyboard only
                first, second, third = (card(cid) for cid in dom_ids)
                await first.focus()
                await page.keyboard.press("ArrowRight")
                await expect(second).to_be_focused()
                await page.keyboard.press("ArrowLeft")
                await expect(first).to_be_focused()
                await page.keyboard.press("2")
                await expect(first.locator(".vault")).to_have_value("ppv")
                await expect(first.locator(".price")).to_be_focused()  # ppv needs a price
                await page.keyboard.type("12.50")
                await page.keyboard.press("Escape")
                await expect(first).to_be_focused()
                await page.keyboard.press("t")
                await expect(first.locator(".tags")).to_be_focused()
                await page.keyboard.type("beach, a1 r3")  # a, 1, r and 3 are text here, not shortcuts
                await page.keyboard.press("Escape")
                await expect(first).to_be_focused()
                await expect(first.locator(".vault")).to_have_value("ppv")
                await expect(first.locator(".reject-row")).to_be_hidden()
                await page.keyboard.press("a")
                await expect(first).to_have_count(0)
                await expect(cards).to_have_count(2)

                # ------------------------------------------------ second: R, a reason, Enter
                await expect(second).to_be_focused()  # the focus moved to the next card
                await page.keyboard.press("r")
                await expect(second.locator(".reason")).to_be_focused()
                await page.keyboard.type("hands look wrong, try again")
                await page.keyboard.press("Enter")
                await expect(second).to_have_count(0)
                await expect(cards).to_have_count(1)

                # ------------------------------------------------ third: 3, then its button
                await expect(third).to_be_focused()
                await page.keyboard.press("3")
                await expect(third.locator(".vault")).to_have_value("archive")
                await third.locator("button.approve").click()
                await expect(cards).to_have_count(0)
                await expect(page.locator("#empty")).to_be_visible()
                await expect(page.locator('#stages [data-stage="in_review"] b')).to_have_text("0")

                # A fourth image comes in (cropped while the stale tab is checked below).
                r = await http.post(
                    "/api/ingest",
                    files={"file": ("late.png", face_png([Placement("grace_hopper", width=520)]), "image/png")},
                    data={"creator": "elena", "mode": "no_face"},
                )
                assert r.status_code == 201, r.text
                late = r.json()["content_id"]

                # ------------------------------------------------ the stale tab gets a 409 on the card
                await other.bring_to_front()
                stale = other.locator(f'#grid .card[data-id="{dom_ids[1]}"]')
                await stale.locator("button.approve").click()
                await expect(stale.locator(".error")).to_contain_text("409")
                await expect(stale.locator(".badge-status")).to_have_text("now rejected")
                await expect(stale.locator("button.approve")).to_be_disabled()

                # ------------------------------------------------ A right after a load, no click
                async def late_in_review():
                    r = await http.get(f"/api/content/{late}")
                    return r.status_code == 200 and r.json()["status"] == "in_review"

                await wait_until(late_in_review, timeout=180, interval=0.25, what="the fourth image in review")
                await page.bring_to_front()
                await page.goto(f"{base}/review")
                await expect(cards).to_have_count(1)
                await page.keyboard.press("a")  # the first card has the focus already
                await expect(cards).to_have_count(0)
                await expect(page.locator("#notice")).to_contain_text("Approved late.png → feed")

                assert dialogs == [], f"a dialog fired: {dialogs}"
                problems = [p for p in problems if "409" not in p]  # the stale tab's conflict
                assert problems == [], problems

            # ---------------------------------------------------------------- what the API says
            got = {cid: (await http.get(f"/api/content/{cid}")).json() for cid in ingested}
            decided = ("approved", "uploaded")  # the upload handler may already have taken it
            a = got[dom_ids[0]]
            assert a["status"] in decided and a["vault"] == "ppv" and a["price_cents"] == 1250, a
            assert a["tags"] == ["beach", "a1 r3"]
            b = got[dom_ids[1]]
            assert b["status"] == "rejected" and b["reject_reason"] == "hands look wrong, try again", b
            c = got[dom_ids[2]]
            assert c["status"] in decided and c["vault"] == "archive", c
            d = (await http.get(f"/api/content/{late}")).json()
            assert d["status"] in decided and d["vault"] == "feed", d  # feed: the first of /api/meta's vaults

        # ---------------------------------------------------------------- the audit trail
        for cid, decision in ((dom_ids[0], "image.approved"), (dom_ids[1], "image.rejected"),
                              (dom_ids[2], "image.approved")):  # fmt: skip
            types = await wait_until(
                lambda cid=cid, decision=decision: _has(history_types(data_dir, env, cid), decision),
                timeout=60,
                interval=0.5,
                what=f"{decision} of {cid} in the stream",
            )
            assert types.count(decision) == 1, types
            other_decision = "image.rejected" if decision == "image.approved" else "image.approved"
            assert other_decision not in types, types



async def _has(types_coro, wanted: str) -> list[str] | None:
    types = await types_coro
    return types if wanted in types else None
