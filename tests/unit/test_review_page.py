"""The review page routes: login form, session cookie, CSP, static files (no I/O beyond ASGI)."""

from __future__ import annotations

import re

import httpx
import pytest

from vaultline.entrypoints.admin import COOKIE, STATIC_DIR, AdminContext, create_app

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
async def client() -> httpx.AsyncClient:
    ctx = AdminContext(token=TOKEN)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        yield c


def csp_directives(response) -> dict[str, str]:
    header = response.headers["content-security-policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


async def test_login_form_is_public_and_under_csp(client):
    r = await client.get("/login")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login"' in r.text and 'name="token"' in r.text
    assert csp_directives(r)["default-src"] == "default-src 'self'"
    assert COOKIE not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("form", [{"token": "wrong"}, {"token": TOKEN + "x"}, {"token": ""}, {}])
async def test_wrong_or_missing_token_gets_the_form_again_with_401(client, form):
    r = await client.post("/login", data=form)
    assert r.status_code == 401
    assert 'role="alert"' in r.text and "not right" in r.text
    assert 'name="token"' in r.text
    assert "set-cookie" not in r.headers
    assert "content-security-policy" in r.headers


async def test_right_token_sets_a_strict_httponly_cookie_and_redirects_to_the_page(client):
    r = await client.post("/login", data={"token": TOKEN})
    assert r.status_code == 303
    assert r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert attrs[0] == f"{COOKIE}={TOKEN}".lower()
    assert "httponly" in attrs
    assert "samesite=strict" in attrs
    assert "path=/" in attrs
    assert "secure" not in attrs  # plain http on 127.0.0.1: a Secure cookie would never come back

    # The cookie is what the admin app accepts from then on.
    page = await client.get("/review")
    assert page.status_code == 200


async def test_review_page_sends_a_strict_csp_and_has_no_inline_code(client):
    r = await client.get("/review", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    d = csp_directives(r)
    assert d["default-src"] == "default-src 'self'"
    assert d["script-src"] == "script-src 'self'"
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script\b[^>]*>", r.text)
    assert scripts and all(re.search(r'src="/static/review\.js\?v=[0-9a-f]+"', s) for s in scripts)
    assert re.search(r'<link rel="stylesheet" href="/static/review\.css\?v=[0-9a-f]+">', r.text)
    assert not re.search(r"\son[a-z]+\s*=", r.text), "inline event handler in the page"
    assert " style=" not in r.text


async def test_review_page_needs_the_token(client):
    r = await client.get("/review", headers={"Accept": "text/html"})
    assert r.status_code in (401, 303)  # 303 to /login once admin.py redirects browsers
    assert "review.js" not in r.text
    if r.status_code == 303:
        assert r.headers["location"] == "/login"
    assert (await client.get("/review", headers={"Authorization": "Bearer nope"})).status_code in (403, 303)


async def test_static_files_are_public_and_offline(client):
    js = await client.get("/static/review.js")
    css = await client.get("/static/review.css")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for text in (js.text, css.text):
        assert not re.search(r"https?://", text), "no CDN / remote resources"
    # Data goes into the DOM as text: no HTML sinks in the script.
    sinks = r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\(|document\.write|\beval\(|new Function\("
    assert not re.search(sinks, js.text)
    assert (await client.get("/static/..%2freview_page.py")).status_code == 404
    assert (STATIC_DIR / "review.js").exists()


async def test_root_redirects_to_the_page_and_logout_clears_the_cookie(client):
    client.cookies.set(COOKIE, TOKEN)
    r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/review"
    out = await client.get("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    cleared = out.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE}=") and ("max-age=0" in cleared or "expires=" in cleared)
