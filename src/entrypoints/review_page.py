"""The review page: a login form, the page shell and its static JS/CSS (no CDN, works offline).

The page itself is a static shell; src/entrypoints/static/review.js fetches the review API
(src/entrypoints/admin_review.py, contract in the admin docs) with the `vaultline_admin` cookie
and renders everything with textContent. Every HTML response carries a strict CSP: no inline
script, no inline style attribute, nothing from another origin.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from vaultline.entrypoints.admin import COOKIE

STATIC_DIR = Path(__file__).parent / "static"
COOKIE_MAX_AGE = 14 * 24 * 3600
MAX_TOKEN_CHARS = 1024

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


@cache
def _asset_version(name: str) -> str:
    """Cache-busting query for a static file (content hash, computed once per process)."""
    try:
        return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def _page(title: str, body: str, *, script: bool = False, status: int = 200) -> HTMLResponse:
    css = f'<link rel="stylesheet" href="/static/review.css?v={_asset_version("review.css")}">'
    js = f'<script src="/static/review.js?v={_asset_version("review.js")}" defer></script>' if script else ""
    doc = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title>{css}{js}</head>\n"
        f"<body>{body}</body></html>\n"
    )
    return HTMLResponse(doc, status_code=status, headers=SECURITY_HEADERS)


def _login_form(error: str | None = None, status: int = 200) -> HTMLResponse:
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
    return _page("vaultline — sign in", body, status=status)


REVIEW_BODY = """
<header class="topbar">
  <h1>vaultline <span>review</span></h1>
  <div class="views" role="group" aria-label="View">
    <button type="button" id="view-review" class="view-btn" data-view="review" aria-pressed="true">In review</button>
    <button type="button" id="view-failed" class="view-btn" data-view="failed" aria-pressed="false"
      aria-label="Failed uploads">Failed uploads <span id="failed-count" class="count" hidden>0</span></button>
  </div>
  <p id="stages" class="stages" aria-live="polite">loading…</p>
  <nav class="filters" aria-label="Filters">
    <label>Creator <select id="f-creator"><option value="">all</option></select></label>
    <label id="flag-filter">Flag <select id="f-flag">
      <option value="">any</option>
      <option value="face">face</option>
      <option value="fallback">fallback</option>
      <option value="near_duplicate">near duplicate</option>
      <option value="needs_manual_crop">needs manual crop</option>
    </select></label>
    <button type="button" id="refresh">Refresh</button>
    <button type="button" id="help-toggle" aria-expanded="false" aria-controls="help">Keys</button>
    <a href="/logout" class="logout">Sign out</a>
  </nav>
</header>
<section id="help" class="help" hidden>
  <h2>Keyboard</h2>
  <dl>
    <dt>← → ↑ ↓</dt><dd>move between cards</dd>
    <dt>A</dt><dd>approve the focused card</dd>
    <dt>R</dt><dd>reject: type a reason, Enter confirms, Esc cancels</dd>
    <dt>T</dt><dd>edit its tags (Enter saves)</dd>
    <dt>1 2 3</dt><dd>vault feed / ppv / archive</dd>
    <dt>P</dt><dd>edit its price (dollars)</dd>
    <dt>O</dt><dd>show the original with the cut line</dd>
    <dt>X / Space</dt><dd>select for bulk actions</dd>
    <dt>U</dt><dd>Failed uploads: retry the upload of the focused card</dd>
    <dt>Esc</dt><dd>leave a field, back to its card</dd>
  </dl>
</section>
<section id="bulk" class="bulk" aria-label="Bulk actions">
  <label class="bulk-all"><input type="checkbox" id="select-all"> <span id="sel-count">0 selected</span></label>
  <span class="bulk-hint">Select cards (X) to approve or reject several at once.</span>
  <label class="bulk-ctl">Vault <select id="bulk-vault">
    <option value="feed">feed</option><option value="ppv">ppv</option><option value="archive">archive</option>
  </select></label>
  <label class="bulk-ctl">Price $ <input id="bulk-price" type="text" inputmode="decimal" placeholder="0.00" size="6"></label>
  <button type="button" id="bulk-approve" class="approve bulk-ctl" disabled>Approve selected</button>
  <input id="bulk-reason" class="bulk-ctl" type="text" placeholder="reason for rejecting the selection" maxlength="500">
  <button type="button" id="bulk-reject" class="reject bulk-ctl" disabled>Reject selected</button>
  <span id="bulk-msg" class="bulk-msg" role="status"></span>
</section>
<p id="notice" class="notice" role="status" aria-live="polite"></p>
<main id="grid" class="grid" aria-label="Items in review"></main>
<p class="more-row"><button type="button" id="more" hidden>Load more</button></p>
<p id="empty" class="empty" hidden>Nothing waiting for review.</p>
"""


def page_routes(ctx: Any) -> list[BaseRoute]:
    """/, /review, /login (GET, POST), /logout and /static/* for the admin app."""
    expected = ctx.token.encode()

    async def root(_: Request) -> Response:
        return RedirectResponse("/review", status_code=303)

    async def review(_: Request) -> Response:
        return _page("vaultline — review", REVIEW_BODY, script=True)

    async def login_form(_: Request) -> Response:
        return _login_form()

    async def login(request: Request) -> Response:
        try:
            form = await request.form(max_files=0, max_fields=8)
            token = form.get("token")
        except Exception:  # noqa: BLE001 - a malformed body is just a failed login
            token = None
        given = token.strip() if isinstance(token, str) else ""
        if not given or len(given) > MAX_TOKEN_CHARS or not hmac.compare_digest(given.encode(), expected):
            return _login_form("That token is not right.", status=401)
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(
            COOKIE,
            given,
            max_age=COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(_: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/", root, methods=["GET"]),
        Route("/review", review, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
