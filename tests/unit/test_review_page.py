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
    assert attrs[0].startswith(f"{COOKIE}=") and TOKEN.lower() not in cookie.lower()  # a session id, not the token
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


STATIC_FILES = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*") if p.suffix in (".js", ".css"))
SCRIPTS = [name for name in STATIC_FILES if name.endswith(".js")]


async def test_static_files_are_public_and_offline(client):
    assert "review.js" in SCRIPTS and "review/cards.js" in SCRIPTS and "lib/dom.js" in SCRIPTS
    css = await client.get("/static/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert not re.search(r"https?://", css.text), "no CDN / remote resources"
    # Data goes into the DOM as text: no HTML sinks in any script.
    sinks = r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\(|document\.write|\beval\(|new Function\("
    for name in SCRIPTS:
        js = await client.get(f"/static/{name}")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"], name
        assert not re.search(r"https?://", js.text), f"no CDN / remote resources in {name}"
        assert not re.search(sinks, js.text), name
    assert (await client.get("/static/..%2freview_page.py")).status_code == 404
    assert (STATIC_DIR / "review.js").exists()


IMPORT = re.compile(r"^\s*(?:import|export)\b[^'\"]*?\bfrom\s*['\"]([^'\"]+)['\"]|^\s*import\s*['\"]([^'\"]+)['\"]", re.M)


def test_modules_import_each_other_by_relative_path_and_every_import_exists():
    """The browser loads the modules as they are (no build step, no import map under the CSP):
    every specifier is a relative path to a file that is there."""
    for name in SCRIPTS:
        path = STATIC_DIR / name
        for spec in (a or b for a, b in IMPORT.findall(path.read_text())):
            assert spec.startswith(("./", "../")), f"{name}: {spec!r} is not a relative import"
            target = (path.parent / spec).resolve()
            assert target.is_file() and STATIC_DIR in target.parents, f"{name}: {spec!r} does not exist"


async def test_static_modules_are_revalidated_so_a_changed_module_is_never_stale(client):
    # Imported modules have no ?v= hash: the browser must ask again (304 when unchanged).
    first = await client.get("/static/review/cards.js")
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get("/static/review/cards.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"


async def test_the_page_keeps_no_list_of_vaults_crop_modes_or_flags(client):
    """They come from GET /api/meta: the markup offers none as an option and no script lists the
    crop modes (the scripts still know that a ppv item needs a price: a rule, not a list)."""
    from vaultline.adapters.db.review import FLAGS
    from vaultline.events import CROP_MODES, VAULTS

    r = await client.get("/review", headers={"Authorization": f"Bearer {TOKEN}"})
    values = (*CROP_MODES, *VAULTS, *FLAGS)
    for value in values:
        assert f'value="{value}"' not in r.text, value
    for name in SCRIPTS:
        text = (STATIC_DIR / name).read_text()
        for value in CROP_MODES:
            assert not re.search(rf"""['"]{value}['"]""", text), f"{name} lists {value!r}"


async def test_root_redirects_to_the_page_and_logout_clears_the_cookie(client):
    await client.post("/login", data={"token": TOKEN})
    r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/review"
    out = await client.get("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    cleared = out.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE}=") and ("max-age=0" in cleared or "expires=" in cleared)
