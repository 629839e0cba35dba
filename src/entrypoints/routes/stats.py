"""Analytics over HTTP: GET /api/stats (the same `Stats` as `vaultline stats --json`) and the
Stats page, server-rendered (SVG charts, tables, thumbnails; no script, so the strict CSP
holds without exceptions)."""

from __future__ import annotations

import html
from datetime import date, datetime, timezone
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from vaultline.adapters.db.analytics import load_stats
from vaultline.domain.analytics import Stats, money, window
from vaultline.domain.errors import Invalid
from vaultline.entrypoints.admin import Services, services
from vaultline.entrypoints.pages import page
from vaultline.entrypoints.stats_views import scope, svg_conversion, svg_funnel, svg_revenue_per_day
from vaultline.events import SLUG_RE

router = APIRouter(tags=["stats"])

ERRORS = {400: {"description": '{"error": message}: a bad date, period or creator'}}


async def _stats(svc: Services, creator: str | None, since: date | None, until: date | None, top: int) -> Stats:
    creator = creator or None
    if creator is not None and not SLUG_RE.match(creator):
        raise Invalid(f"creator must be a creator slug ([a-z0-9_-]), not {creator!r}")
    first, last = window(since, until, datetime.now(timezone.utc).date())
    return await load_stats(svc.pool, creator=creator, since=first, until=last, top=top)


@router.get("/api/stats", response_model=Stats, responses=ERRORS, summary="Revenue, conversion, funnel, top content and fans")
async def api_stats(
    svc: Annotated[Services, Depends(services)],
    creator: Annotated[str | None, Query(description="One creator; all when empty")] = None,
    since: Annotated[date | None, Query(description="First day (UTC); default 30 days before until")] = None,
    until: Annotated[date | None, Query(description="Last day, inclusive (UTC); default today")] = None,
    top: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> Stats:
    return await _stats(svc, creator, since, until, top)


@router.get("/stats", include_in_schema=False)
async def stats_page(
    svc: Annotated[Services, Depends(services)],
    creator: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    try:
        s = await _stats(svc, creator, _day(since, "since"), _day(until, "until"), 10)
    except Invalid as e:
        body = _form(creator or "", since or "", until or "") + f'<p class="stats-error" role="alert">{html.escape(e.message)}</p>'
        return page("vaultline — stats", f'<main class="stats">{body}</main>', styles=("review.css", "stats.css"),
                    active="stats", status=400)  # fmt: skip
    return page("vaultline — stats", f'<main class="stats">{render(s)}</main>', styles=("review.css", "stats.css"),
                active="stats")  # fmt: skip


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name} must be a date like 2026-11-30, not {value!r}") from None


def _form(creator: str, since: str, until: str) -> str:
    e = html.escape
    return f"""
<header class="stats-head">
  <h1>Stats</h1>
  <form method="get" action="/stats" class="stats-filter">
    <label>Creator <input type="text" name="creator" value="{e(creator)}" placeholder="all" size="12"></label>
    <label>Since <input type="date" name="since" value="{e(since)}"></label>
    <label>Until <input type="date" name="until" value="{e(until)}"></label>
    <button type="submit">Show</button>
  </form>
</header>"""


def render(s: Stats) -> str:
    """The page body: filter form, headline figures, three charts, top content and fans."""
    e = html.escape
    t = s.totals
    query = urlencode({k: v for k, v in (("creator", s.creator), ("since", s.since.isoformat()),
                                          ("until", s.until.isoformat())) if v})  # fmt: skip
    kpis = [
        ("revenue", "Revenue", money(t.revenue_cents)),
        ("sales", "Sales", str(t.sales)),
        ("offers", "PPV offers", str(t.ppv_offers)),
        ("conversion", "Conversion", "–" if t.conversion is None else f"{t.conversion * 100:.1f}%"),
        ("replies", "Replies sent", str(t.replies_sent)),
        ("reply-time", "Median reply", "–" if t.median_reply_seconds is None else f"{t.median_reply_seconds / 60:.1f} min"),
    ]  # fmt: skip
    parts = [
        _form(s.creator or "", s.since.isoformat(), s.until.isoformat()),
        f'<p class="stats-scope">{e(scope(s))} · <a href="/api/stats?{e(query)}">JSON</a></p>',
        '<section class="kpis">'
        + "".join(f'<div class="kpi" id="kpi-{k}"><span class="kpi-label">{e(label)}</span>'
                  f'<span class="kpi-value">{e(v)}</span></div>' for k, label, v in kpis)  # fmt: skip
        + "</section>",
        f'<section class="chart-card" id="chart-revenue"><h2>Revenue per day, by kind</h2>{svg_revenue_per_day(s)}</section>',
        f'<section class="chart-card" id="chart-funnel"><h2>Funnel: generated → approved → uploaded → sent → purchased</h2>'
        f"{svg_funnel(s)}</section>",
        f'<section class="chart-card" id="chart-conversion"><h2>Conversion by category (PPV purchases / offers)</h2>'
        f"{svg_conversion(s)}</section>",
    ]
    rows = "".join(
        f'<tr><td><img class="thumb" src="/api/content/{e(c.content_id)}/image?variant=thumb" alt="" loading="lazy"></td>'
        f'<td class="mono">{e(c.content_id[:8])}</td><td>{e(c.category or "")}</td><td>{e(c.vault or "")}</td>'
        f"<td>{c.sends}</td><td>{c.purchases}</td><td>{e(money(c.revenue_cents))}</td></tr>"
        for c in s.top_content
    )
    parts.append('<section class="table-card" id="top-content"><h2>Top content</h2>'
                 + ('<table><tr><th></th><th>content</th><th>category</th><th>vault</th><th>sends</th><th>purchases</th>'
                    f"<th>revenue</th></tr>{rows}</table>" if rows else "<p>No content sent in this period.</p>")
                 + "</section>")  # fmt: skip
    rows = "".join(
        f"<tr><td>{e(f.handle or f.display_name or '')}</td><td class=\"mono\">{e(f.fan_id)}</td><td>{f.sales}</td>"
        f"<td>{f.purchases}</td><td>{e(money(f.revenue_cents))}</td></tr>"
        for f in s.top_fans
    )
    parts.append('<section class="table-card" id="top-fans"><h2>Top fans</h2>'
                 + ("<table><tr><th>fan</th><th>id</th><th>sales</th><th>purchases</th><th>revenue</th></tr>"
                    f"{rows}</table>" if rows else "<p>No sales in this period.</p>")
                 + "</section>")  # fmt: skip
    return "\n".join(parts)
