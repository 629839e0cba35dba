"""The pages of the admin app: /, /review, /login (GET, POST), /logout. The page shell and the
navigation are in entrypoints/pages.py; the review page's code is static/review.js and the
modules it imports (static/review/, static/lib/). The vaults, crop modes and flags in its
controls come from GET /api/meta, so this markup names none of them."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from vaultline.entrypoints.admin import COOKIE, AdminContext, client_of, context
from vaultline.entrypoints.pages import login_form, page

MAX_TOKEN_CHARS = 1024

router = APIRouter(include_in_schema=False)

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
    <label id="flag-filter">Flag <select id="f-flag"><option value="">any</option></select></label>
    <button type="button" id="refresh">Refresh</button>
    <button type="button" id="help-toggle" aria-expanded="false" aria-controls="help">Keys</button>
  </nav>
</header>
<section id="help" class="help" hidden>
  <h2>Keyboard</h2>
  <dl>
    <dt>← → ↑ ↓</dt><dd>move between cards</dd>
    <dt>A</dt><dd>approve the focused card</dd>
    <dt>R</dt><dd>reject: type a reason, Enter confirms, Esc cancels</dd>
    <dt>T</dt><dd>edit its tags (Enter saves)</dd>
    <dt id="vault-key-names">1 2 3</dt><dd id="vault-keys">pick the vault</dd>
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
  <label class="bulk-ctl">Vault <select id="bulk-vault"></select></label>
  <label class="bulk-ctl">Price $ <input id="bulk-price" type="text" inputmode="decimal" placeholder="0.00" size="6"></label>
  <button type="button" id="bulk-approve" class="approve bulk-ctl" disabled>Approve selected</button>
  <input id="bulk-reason" class="bulk-ctl" type="text" placeholder="reason for rejecting the selection" maxlength="500">
  <button type="button" id="bulk-reject" class="reject bulk-ctl" disabled>Reject selected</button>
  <span id="bulk-msg" class="bulk-msg" role="status"></span>
</section>
<section id="problems" class="problems" aria-label="Problems" hidden>
  <details open>
    <summary>Problems: <span id="problems-count">0</span> watched files never became an image (moved to rejected/)</summary>
    <ul id="problems-list"></ul>
  </details>
</section>
<p id="notice" class="notice" role="status" aria-live="polite"></p>
<main id="grid" class="grid" aria-label="Items in review"></main>
<p class="more-row"><button type="button" id="more" hidden>Load more</button></p>
<p id="empty" class="empty" hidden>Nothing waiting for review.</p>
"""


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/review", status_code=303)


@router.get("/review")
async def review_page(view: str | None = None) -> Response:
    active = "failed" if view == "failed" else "review"
    return page("vaultline — review", REVIEW_BODY, scripts=("review.js",), active=active)


@router.get("/login")
async def login_page() -> Response:
    return login_form()


@router.post("/login")
async def login(request: Request, ctx: AdminContext = Depends(context)) -> Response:
    """The admin token in, a session cookie out (a signed session id, never the token itself).
    Failed attempts are throttled per client address."""
    sessions, throttle = request.app.state.sessions, request.app.state.throttle
    client = client_of(request.scope)
    wait = throttle.wait(client)
    if wait:
        response = login_form("Too many failed sign-ins from this address. Try again in a few minutes.", status=429)
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response
    try:
        form = await request.form(max_files=0, max_fields=8)
        token = form.get("token")
    except Exception:  # noqa: BLE001 - a malformed body is just a failed login
        token = None
    given = token.strip() if isinstance(token, str) else ""
    if not given or len(given) > MAX_TOKEN_CHARS or not hmac.compare_digest(given.encode(), ctx.token.encode()):
        throttle.fail(client)
        return login_form("That token is not right.", status=401)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(),
        max_age=sessions.max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/logout")
async def logout(request: Request) -> Response:
    request.app.state.sessions.revoke(request.cookies.get(COOKIE, ""))  # the cookie is dead even if kept
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
