"""The Stats page and GET /api/stats over a real socket, and the page rendered by headless
Chromium (Debian's chromium via playwright): the hand-computed numbers of the seed, the three
SVG charts, thumbnails of the top content, no CSP violation; a screenshot is kept in
test-artifacts/stats.png."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.browser import ARTIFACTS, chromium, needs_chromium, open_signed_in
from tests.images import face_png, Placement
from tests.integration.analytics_seed import C, CREATOR, D1, D3, EXPECTED_TOTALS, seed_events
from tests.integration.conftest import js, settings  # noqa: F401 - fixtures
from tests.waiting import wait_until
from vaultline.adapters.db.analytics import PostgresAnalyticsStore
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app
from vaultline.entrypoints.metrics_http import with_metrics
from vaultline.handlers import analytics

pytestmark = [
    pytest.mark.e2e,
    needs_chromium,
]

TOKEN = "stats-page-token"
WINDOW = {"creator": CREATOR, "since": D1.isoformat(), "until": D3.isoformat()}


async def seed(pool, library_root: Path) -> None:
    store = PostgresAnalyticsStore(pool)
    for e in seed_events():
        await analytics.handle(e, store=store)
    png = face_png([Placement("astronaut", width=300)])
    for i in (1, 2, 3, 4):  # the sent images, in review storage, for their thumbnails
        key = f"{CREATOR}/3_review/{C[i]}.png"
        (library_root / key).parent.mkdir(parents=True, exist_ok=True)
        (library_root / key).write_bytes(png)
        await pool.execute("INSERT INTO content(id, creator, status, review_key) VALUES ($1, $2, 'uploaded', $3)",
                           C[i], CREATOR, key)  # fmt: skip


@pytest.mark.timeout(180)
async def test_stats_api_and_page_in_chromium(settings, pool):
    from playwright.async_api import expect

    await seed(pool, settings.library_root)
    async with Runtime(settings, [], relay=False) as rt:
        ctx = AdminContext(token=TOKEN, services=Services.from_runtime(rt), trusted_hosts=["127.0.0.1"])
        server = AdminServer(with_metrics(create_app(ctx), settings, TOKEN, rt), port=0)
        task = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started, what="admin app")
            base = server.url
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                assert (await http.get("/api/stats")).status_code == 401
                r = await http.get("/api/stats", params=WINDOW, headers=auth)
                assert r.status_code == 200, r.text
                assert r.json()["totals"] == EXPECTED_TOTALS
                for bad, message in (({"since": "soon"}, "since"), ({"since": "2026-11-05", "until": "2026-11-01"},
                                     "is after"), ({"creator": "No Slug"}, "creator")):  # fmt: skip
                    r = await http.get("/api/stats", params=bad, headers=auth)
                    assert r.status_code == 400 and message in r.json()["error"], (bad, r.text)
                r = await http.get("/stats", params={"until": "never"}, headers=auth)
                assert r.status_code == 400 and "until must be a date" in r.text
                # The admin app's /metrics, behind the same protection as every route.
                assert (await http.get("/metrics")).status_code == 401
                assert "vaultline_consumer_pending" in (await http.get("/metrics", headers=auth)).text
                other_host = {**auth, "Host": "evil.example"}
                assert (await http.get("/metrics", headers=other_host)).status_code == 400
                openapi = (await http.get("/openapi.json", headers=auth)).json()
                assert "/api/stats" in openapi["paths"]

            async with chromium({"width": 1280, "height": 1000}) as b:
                problems = b.problems
                page = await b.new_page()
                # not signed in: the login form
                await open_signed_in(page, base, f"/stats?creator={CREATOR}&since={D1}&until={D3}", TOKEN)
                await expect(page.locator("#kpi-revenue .kpi-value")).to_have_text("$79.99")
                await expect(page.locator("#kpi-conversion .kpi-value")).to_have_text("60.0%")
                await expect(page.locator("#kpi-reply-time .kpi-value")).to_have_text("10.0 min")
                await expect(page.locator("nav.site-nav a[aria-current=page]")).to_have_text("Stats")
                # Revenue per day stacked by kind: (D2 purchase), (D2 tip), (D3 subscription).
                await expect(page.locator("#chart-revenue svg rect.bar")).to_have_count(3)
                await expect(page.locator("#chart-revenue svg rect.kind-subscription")).to_have_count(1)
                await expect(page.locator("#chart-funnel svg rect.bar")).to_have_count(5)
                await expect(page.locator("#chart-conversion svg rect.bar")).to_have_count(2)
                funnel = await page.locator("#chart-funnel svg rect.bar").evaluate_all(
                    "rs => rs.map(r => r.getBBox().width)")
                assert funnel[0] > funnel[1] >= funnel[3] > funnel[4] > 0, funnel  # 6, 4, 4, 4, 3
                await expect(page.locator("#top-content tr td:nth-child(3)").first).to_have_text("beach")
                await expect(page.locator("#top-fans tr td:nth-child(2)").first).to_have_text("fan_c")

                thumbs = page.locator("#top-content img.thumb")
                await expect(thumbs).to_have_count(4)
                await wait_until(lambda: thumbs.evaluate_all("is => is.every(i => i.complete && i.naturalWidth > 0)"),
                                 what="every thumbnail to load")  # fmt: skip
                await page.screenshot(path=str(ARTIFACTS / "stats.png"), full_page=True)
                assert not problems, problems  # includes any CSP violation
        finally:
            await server.stop()
            await task
