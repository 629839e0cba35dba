"""The "problems" list on the review page, in headless Chromium against the real admin app:
a watched file that never became an image shows up with its reason, rendered as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium, needs_chromium, sign_in
from tests.waiting import wait_until
from vaultline.adapters.db.problems import record_problem
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    needs_chromium,
]
SCRIPT = "<script>alert(1)</script>"
TOKEN = "problems-page-test-token-0123456789abcdef"


async def test_problems_are_listed_on_the_review_page(settings, pool):
    from playwright.async_api import expect

    async with Runtime(settings, []) as rt:
        ctx = AdminContext(token=TOKEN, services=Services.from_runtime(rt))
        server = AdminServer(create_app(ctx))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        try:
            async with chromium() as b:
                dialogs = b.dialogs
                page = await b.new_page()
                # The session cookie is a signed session id now: sign in through the form.
                await sign_in(page, server.url, TOKEN)
                await expect(page.locator("#grid")).to_be_attached()
                await expect(page.locator("#problems")).to_be_hidden()  # nothing to show yet

                await record_problem(
                    pool, creator="elena", path="/comfy/output/ComfyUI_00007_.png",
                    moved_to="elena/rejected/ComfyUI_00007_.png", reason=f"not a complete image {SCRIPT}",
                )  # fmt: skip
                await page.reload()
                problems = page.locator("#problems")
                await expect(problems).to_be_visible()
                await expect(page.locator("#problems-count")).to_have_text("1")
                item = page.locator("#problems-list li")
                await expect(item).to_have_count(1)
                await expect(item.locator(".problem-file")).to_have_text("ComfyUI_00007_.png")
                await expect(item.locator(".problem-reason")).to_have_text(f"not a complete image {SCRIPT}")
                assert dialogs == []  # the reason stayed text
        finally:
            await server.stop()
