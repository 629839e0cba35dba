"""/metrics on the admin app: behind the app's protection, or in front of it when public."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from vaultline.entrypoints.admin import AdminContext, create_app
from vaultline.entrypoints.metrics_http import with_metrics
from vaultline.settings import Settings

TOKEN = "unit-metrics-token-0123456789"


async def get(app, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        return await http.get(path, headers=headers)


async def test_metrics_is_protected_like_the_admin_app(tmp_path):
    ctx = AdminContext(token=TOKEN, trusted_hosts=["127.0.0.1"])
    app = with_metrics(create_app(ctx), Settings(data_dir=tmp_path), TOKEN, None)
    assert (await get(app, "/metrics")).status_code == 401
    assert (await get(app, "/metrics", authorization="Bearer nope")).status_code == 403
    r = await get(app, "/metrics", authorization=f"Bearer {TOKEN}")
    assert r.status_code == 200 and list(text_string_to_metric_families(r.text))
    assert (await get(app, "/metrics", authorization=f"Bearer {TOKEN}", host="evil.example")).status_code == 400


async def test_metrics_public_answers_without_a_token_and_the_rest_stays_closed(tmp_path):
    ctx = AdminContext(token=TOKEN, trusted_hosts=["127.0.0.1"])
    app = with_metrics(create_app(ctx), Settings(data_dir=tmp_path, metrics_public=True), TOKEN, None)
    r = await get(app, "/metrics", host="prometheus-target")  # scraped by service name
    assert r.status_code == 200 and "vaultline_events_handled" in r.text
    assert (await get(app, "/api/stats")).status_code == 401
