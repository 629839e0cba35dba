"""The admin app's HTML: one page shell for every page (shared navigation, strict CSP, assets
with cache-busting versions) and the login form.

Pages are static shells; their ES modules (src/entrypoints/static/) fetch the JSON API with the
session cookie and render everything with textContent. Every HTML response carries a strict
CSP: no inline script, no inline style attribute, nothing from another origin."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from functools import cache

from starlette.responses import HTMLResponse

from vaultline.entrypoints.admin import STATIC_DIR

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# (key, label, href): every page shows the same navigation, the current one marked.
NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("review", "Review", "/review"),
    ("failed", "Failed uploads", "/review?view=failed"),
    ("fans", "Fans", "/fans"),
    ("inbox", "Inbox", "/inbox"),
    ("stats", "Stats", "/stats"),
)


@cache
def asset_version(name: str) -> str:
    """Cache-busting query for a static file (content hash, computed once per process)."""
    try:
        return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def asset(name: str) -> str:
    """The URL a page links a static file by. Modules that a script imports (`./lib/api.js`) are
    fetched without this hash; admin.RevalidatedStaticFiles serves /static with
    `Cache-Control: no-cache` so those are revalidated instead."""
    return f"/static/{name}?v={asset_version(name)}"


def navigation(active: str | None) -> str:
    links = []
    for key, label, href in NAVIGATION:
        current = ' aria-current="page"' if key == active else ""
        links.append(f'<a href="{href}" data-nav="{key}"{current}>{html.escape(label)}</a>')
    return (
        '<nav class="site-nav" aria-label="Pages"><span class="brand">vaultline</span>'
        + "".join(links)
        + '<a href="/logout" class="logout">Sign out</a></nav>'
    )


def page(
    title: str,
    body: str,
    *,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = ("review.css",),
    active: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A whole HTML page: `body` (trusted markup written by us, never user data) under the shared
    navigation (omitted when `active` is None, e.g. the login form), `scripts` as ES modules."""
    css = "".join(f'<link rel="stylesheet" href="{asset(s)}">' for s in styles)
    js = "".join(f'<script type="module" src="{asset(s)}"></script>' for s in scripts)
    nav = navigation(active) if active is not None else ""
    doc = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title>{css}{js}</head>\n"
        f"<body>{nav}{body}</body></html>\n"
    )
    return HTMLResponse(doc, status_code=status, headers=SECURITY_HEADERS)


def login_form(error: str | None = None, status: int = 200) -> HTMLResponse:
    err = f'<p class="login-error" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""
<main class="login">
  <form method="post" action="/login" class="login-box">
    <h1>vaultline <span>review</span></h1>
    <p class="hint">Paste the admin token (printed by <code>vaultline run</code>, stored in
      <code>DATA_DIR/admin-token</code>).</p>
    {err}
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
    <button type="submit">Sign in</button>
  </form>
</main>"""
    return page("vaultline — sign in", body, status=status)
